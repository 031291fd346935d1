//! The plan of a run, all customers and events sorted by delivery, and its writers: the
//! JSON-lines event file (ending with the final tick) and the ground-truth CSV.
//!
//! It may touch the customer model (to build the plan) and the renderer; it writes to the
//! writer it is given and opens no files itself.

use super::config::{GenConfig, GenSummary};
use super::customer::{new_customer, Counters, Customer, World};
use super::event::{Delivery, Dirty, Ev, LineTag};
use super::format::{push_date, push_ts, push_uint};
use super::ids::{push_customer_id, push_dealer_id};
use super::{Progress, GROUND_TRUTH_HEADER};
use std::io::{self, Write};
use std::path::PathBuf;

/// All generated customers and events, events sorted by delivery.
pub(super) struct Plan {
    pub(super) world: World,
    pub(super) customers: Vec<Customer>,
    pub(super) events: Vec<Ev>,
    pub(super) ctr: Counters,
}

impl Plan {
    pub(super) fn build(cfg: &GenConfig, prog: &mut Progress) -> Plan {
        let world = World::new(cfg);
        let mut ctr = Counters::default();
        let mut events = Vec::with_capacity((cfg.customers as usize).saturating_mul(22));
        let mut customers = Vec::with_capacity(cfg.customers as usize);
        for i in 0..cfg.customers {
            customers.push(new_customer(&world, i as u32, &mut events, &mut ctr));
            prog.update(i + 1);
        }
        // Stable: events delivered at the same second keep their generation order, so a
        // duplicate always follows its original.
        events.sort_by_key(|e| e.deliver);
        Plan {
            world,
            customers,
            events,
            ctr,
        }
    }

    pub(super) fn summary(&self, files: Vec<PathBuf>) -> GenSummary {
        let cfg = &self.world.cfg;
        GenSummary {
            events: self.ctr.events,
            lines: self.events.len() as u64 + 1,
            dirty_lines: self.ctr.duplicates + self.ctr.corrupted,
            customers: self.customers.len() as u64,
            dropouts: self
                .customers
                .iter()
                .filter(|c| c.dropout_day.is_some())
                .count() as u64,
            files,
            start: cfg.start,
            end: cfg.end(),
        }
    }

    pub(super) fn write_events<W: Write>(
        &self,
        w: &mut W,
        mut tags: Option<&mut Vec<LineTag>>,
        prog: &mut Progress,
    ) -> io::Result<()> {
        let mut line = String::with_capacity(512);
        let n = self.events.len() as u64;
        let customers = self.customers.len() as u64;
        for (j, ev) in self.events.iter().enumerate() {
            line.clear();
            self.render(&mut line, ev);
            line.push('\n');
            w.write_all(line.as_bytes())?;
            if let Some(t) = tags.as_deref_mut() {
                t.push(LineTag {
                    dirty: ev.dirty,
                    delivery: ev.delivery,
                    tick: false,
                });
            }
            prog.update(customers + (j as u64 + 1) * customers / n.max(1));
        }
        line.clear();
        line.push_str("{\"type\":\"tick\",\"event_time\":\"");
        push_ts(&mut line, self.world.cfg.end().0);
        line.push_str("\"}\n");
        w.write_all(line.as_bytes())?;
        if let Some(t) = tags {
            t.push(LineTag {
                dirty: Dirty::Clean,
                delivery: Delivery::OnTime,
                tick: true,
            });
        }
        Ok(())
    }

    pub(super) fn write_ground_truth<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut line = String::with_capacity(96);
        w.write_all(GROUND_TRUTH_HEADER.as_bytes())?;
        w.write_all(b"\n")?;
        for (i, c) in self.customers.iter().enumerate() {
            line.clear();
            push_customer_id(&mut line, i as u32);
            line.push(',');
            push_dealer_id(&mut line, c.dealer);
            line.push(',');
            line.push_str(c.segment());
            line.push(',');
            push_uint(&mut line, u64::from(c.cadence_days), 1);
            line.push(',');
            if let Some(d) = c.dropout_day {
                push_date(&mut line, d);
            }
            line.push(',');
            if let Some(cause) = c.cause {
                line.push_str(cause.as_str());
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    }
}
