//! Rendering one planned event as a JSON line, with the corruption its dirty kind asks
//! for (missing field, bad VIN, phone or timestamp, negative amount, unknown RO type,
//! truncated JSON).
//!
//! Pure: appends to a string; it may read the plan's customers and the catalogue.

use super::catalogue::MODELS;
use super::event::{Body, Dirty, Ev};
use super::format::{push_bad_ts, push_cents, push_date, push_ts, push_uint, Obj};
use super::ids::{
    push_bad_phone, push_bad_vin, push_customer_id, push_dealer_id, push_phone, push_vin,
};
use super::plan::Plan;
use crate::core::event::ContractType;

impl Plan {
    /// Renders one event as a JSON object (no newline), corrupted as its `dirty` says.
    pub(super) fn render(&self, buf: &mut String, ev: &Ev) {
        let c = &self.customers[ev.cust as usize];
        let dirty = ev.dirty;
        let var = ev.dirty_var;
        let missing = if dirty == Dirty::MissingField {
            match var % 5 {
                0..=2 => "customer_id",
                3 => "dealer_id",
                _ => match ev.body {
                    Body::Ro { .. } => "ro_number",
                    Body::Visit { .. } => "visit_type",
                    Body::Contract { .. } => "contract_id",
                },
            }
        } else {
            ""
        };
        let mut o = Obj::new(buf);
        let (ty, prefix) = match ev.body {
            Body::Ro { .. } => ("repair_order", "ro-"),
            Body::Visit { .. } => ("visit", "v-"),
            Body::Contract { .. } => ("contract", "k-"),
        };
        o.string("type", ty);
        o.key("event_id");
        o.buf.push('"');
        o.buf.push_str(prefix);
        push_uint(o.buf, u64::from(ev.serial), 1);
        o.buf.push('"');
        let secs = self.world.base_s + i64::from(ev.time);
        o.key("event_time");
        o.buf.push('"');
        if dirty == Dirty::BadTimestamp {
            push_bad_ts(o.buf, secs, var);
        } else {
            push_ts(o.buf, secs * 1000);
        }
        o.buf.push('"');
        if missing != "dealer_id" {
            o.key("dealer_id");
            o.buf.push('"');
            push_dealer_id(o.buf, c.dealer);
            o.buf.push('"');
        }
        if missing != "customer_id" {
            o.key("customer_id");
            o.buf.push('"');
            push_customer_id(o.buf, ev.cust);
            o.buf.push('"');
        }
        if dirty == Dirty::BadPhone {
            o.key("phone");
            o.buf.push('"');
            push_bad_phone(
                o.buf,
                if c.phone == 0 {
                    13_800_138_000
                } else {
                    c.phone
                },
                var,
            );
            o.buf.push('"');
        } else if ev.phone_fmt != 0 {
            o.key("phone");
            o.buf.push('"');
            push_phone(o.buf, c.phone, ev.phone_fmt);
            o.buf.push('"');
        }
        match ev.body {
            Body::Ro {
                ro_type,
                km,
                labor_cents,
                parts_cents,
            } => {
                if dirty == Dirty::BadVin {
                    o.key("vin");
                    o.buf.push('"');
                    push_bad_vin(o.buf, &c.vin, var);
                    o.buf.push('"');
                } else if ev.vin_fmt != 3 {
                    o.key("vin");
                    o.buf.push('"');
                    push_vin(o.buf, &c.vin, ev.vin_fmt);
                    o.buf.push('"');
                }
                o.string("vehicle_model", MODELS[usize::from(c.model)].name);
                o.key("vehicle_purchase_date");
                o.buf.push('"');
                push_date(o.buf, c.purchase_day);
                o.buf.push('"');
                if missing != "ro_number" {
                    o.key("ro_number");
                    o.buf.push_str("\"RO");
                    push_uint(o.buf, u64::from(c.dealer) + 1, 4);
                    o.buf.push('-');
                    push_uint(o.buf, u64::from(ev.serial), 8);
                    o.buf.push('"');
                }
                if dirty == Dirty::UnknownRoType {
                    const UNKNOWN: [&str; 5] =
                        ["oil_change", "maintainance", "PDI", "body_paint", "tyre"];
                    o.string("ro_type", UNKNOWN[usize::from(var) % UNKNOWN.len()]);
                } else {
                    o.string("ro_type", ro_type.as_str());
                }
                o.key("mileage_km");
                push_uint(o.buf, u64::from(km), 1);
                let total = i64::from(labor_cents) + i64::from(parts_cents);
                let (mut l, mut p, mut t) = (i64::from(labor_cents), i64::from(parts_cents), total);
                if dirty == Dirty::NegativeAmount {
                    match var % 3 {
                        0 => t = -t.max(100),
                        1 => l = -l.max(100),
                        _ => p = -p.max(100),
                    }
                }
                o.key("labor_amount");
                push_cents(o.buf, l);
                o.key("parts_amount");
                push_cents(o.buf, p);
                o.key("total_amount");
                push_cents(o.buf, t);
            }
            Body::Visit { visit_type, region } => {
                if missing != "visit_type" {
                    o.string("visit_type", visit_type.as_str());
                }
                if region != 0 {
                    o.key("in_service_region");
                    o.buf.push_str(if region == 2 { "true" } else { "false" });
                }
            }
            Body::Contract {
                contract_type,
                action,
                contract,
                start_day,
                end_day,
                amount_cents,
            } => {
                if missing != "contract_id" {
                    o.key("contract_id");
                    o.buf.push('"');
                    o.buf.push_str(match contract_type {
                        ContractType::MaintenancePlan => "MP-",
                        ContractType::ExtendedWarranty => "EW-",
                        ContractType::Insurance => "INS-",
                        ContractType::Membership => "MB-",
                    });
                    push_uint(o.buf, u64::from(contract), 8);
                    o.buf.push('"');
                }
                o.string("contract_type", contract_type.as_str());
                o.string("action", action.as_str());
                o.key("start_date");
                o.buf.push('"');
                push_date(o.buf, start_day);
                o.buf.push('"');
                o.key("end_date");
                o.buf.push('"');
                push_date(o.buf, end_day);
                o.buf.push('"');
                o.key("amount");
                let a = i64::from(amount_cents);
                push_cents(
                    o.buf,
                    if dirty == Dirty::NegativeAmount {
                        -a.max(100)
                    } else {
                        a
                    },
                );
            }
        }
        o.buf.push('}');
        if dirty == Dirty::Malformed {
            // Cut somewhere between 30% and 90% of the line: never a complete object.
            let len = buf.len();
            let cut = len * (30 + usize::from(var) * 60 / 255) / 100;
            buf.truncate(cut.clamp(1, len - 2));
        }
    }
}
