//! Contracts in a customer's simulation: their amounts, the chain from signing through
//! renewals to expiry or cancellation, and the contracts an existing customer already
//! holds when the period starts.
//!
//! An extension of [`Sim`]; it may touch the simulated customer, its random stream and
//! the contract counter, and emits events through [`Sim::push`].

use super::calendar::{add_months, sub_months, DAY_S};
use super::event::Body;
use super::sim::Sim;
use crate::core::event::{ContractAction, ContractType};
use rand::Rng;

impl Sim<'_> {
    pub(super) fn contract_amount(&mut self, ty: ContractType) -> u32 {
        let yuan = match ty {
            ContractType::MaintenancePlan => self.rng.gen_range(1200.0..4800.0) * self.factor,
            ContractType::ExtendedWarranty => self.rng.gen_range(1800.0..6000.0) * self.factor,
            ContractType::Insurance => self.rng.gen_range(3000.0..7500.0) * self.factor,
            ContractType::Membership => {
                [0.0, 0.0, 0.0, 199.0, 299.0, 499.0][self.rng.gen_range(0..6)]
            }
        };
        yuan.round() as u32 * 100
    }

    /// A contract from signing (if `signed_at` is given) through renewals to its expiry or
    /// cancellation. Returns the day it stops running.
    pub(super) fn contract_chain(
        &mut self,
        ty: ContractType,
        signed_at: Option<i64>,
        first_term: (i32, i32),
        months: u32,
        renew_p: f64,
    ) -> i32 {
        self.ctr.contract += 1;
        let contract = self.ctr.contract;
        let mut amount_cents = self.contract_amount(ty);
        let (mut start_day, mut end_day) = first_term;
        let ev = |sim: &mut Sim, t: i64, action, s, e, a| {
            sim.push(
                t,
                Body::Contract {
                    contract_type: ty,
                    action,
                    contract,
                    start_day: s,
                    end_day: e,
                    amount_cents: a,
                },
            );
        };
        let mut after = i64::MIN;
        if let Some(t) = signed_at {
            ev(
                self,
                t,
                ContractAction::Signed,
                start_day,
                end_day,
                amount_cents,
            );
            after = t;
        }
        let cancel_p = match ty {
            ContractType::MaintenancePlan => 0.04,
            ContractType::ExtendedWarranty => 0.02,
            ContractType::Insurance => 0.02,
            ContractType::Membership => 0.05,
        };
        loop {
            let term_start = i64::from(start_day) * DAY_S;
            let term_end = i64::from(end_day) * DAY_S;
            if term_start >= self.w.end_s {
                return end_day;
            }
            // Customers who leave during a prepaid term often ask for a refund.
            let prepaid = matches!(ty, ContractType::MaintenancePlan | ContractType::Membership);
            let leaves = prepaid && self.dropout_s < term_end;
            let p = if leaves { 0.3 } else { cancel_p };
            if self.rng.gen_bool(p) {
                let from =
                    term_start
                        .max(after + DAY_S)
                        .max(if leaves { self.dropout_s } else { 0 });
                if from < term_end {
                    let day = Self::day(self.rng.gen_range(from..term_end));
                    let t = self.business_time(day).max(after + 60);
                    ev(
                        self,
                        t,
                        ContractAction::Cancelled,
                        start_day,
                        end_day,
                        amount_cents,
                    );
                    return day;
                }
            }
            let renew_day = end_day - self.rng.gen_range(1..=30);
            let renew_at = self.business_time(renew_day).max(after + 60);
            if renew_at < self.dropout_s && renew_at < self.w.end_s && self.rng.gen_bool(renew_p) {
                start_day = end_day;
                end_day = add_months(start_day, months);
                amount_cents = (f64::from(amount_cents) * self.rng.gen_range(0.95..1.1) / 100.0)
                    .round() as u32
                    * 100;
                ev(
                    self,
                    renew_at,
                    ContractAction::Renewed,
                    start_day,
                    end_day,
                    amount_cents,
                );
                after = renew_at;
                continue;
            }
            // The dealer system closes expired contracts in a morning batch.
            let t = term_end + self.rng.gen_range(3600..4 * 3600);
            ev(
                self,
                t,
                ContractAction::Expired,
                start_day,
                end_day,
                amount_cents,
            );
            return end_day;
        }
    }

    /// Contracts an existing customer already holds when the period starts.
    pub(super) fn existing_contracts(&mut self) {
        let w = self.w;
        let p = self.c.purchase_day;
        if self.rng.gen_bool(0.55) {
            // Insured through the dealer; the policy renews on the purchase anniversary.
            let mut k = 1;
            while add_months(p, 12 * k) <= w.start_day {
                k += 1;
            }
            let term = (add_months(p, 12 * (k - 1)), add_months(p, 12 * k));
            self.contract_chain(ContractType::Insurance, None, term, 12, 0.82);
        }
        if self.initial_plan {
            let months = if self.rng.gen_bool(0.5) { 12 } else { 24 };
            let end = w.start_day + self.rng.gen_range(30..(30 * months as i32));
            self.plan_until = self.contract_chain(
                ContractType::MaintenancePlan,
                None,
                (sub_months(end, months), end),
                months,
                0.35,
            );
        }
        if self.rng.gen_bool(0.12) {
            let end = w.start_day + self.rng.gen_range(1..366);
            self.member_until = self.contract_chain(
                ContractType::Membership,
                None,
                (sub_months(end, 12), end),
                12,
                0.5,
            );
        }
        if self.warranty_end_day <= w.start_day {
            self.ew_offered = true;
            if self.takes_extended_warranty {
                let months = [24, 36][self.rng.gen_range(0..2)];
                let end = add_months(self.warranty_end_day, months);
                if end > w.start_day {
                    self.contract_chain(
                        ContractType::ExtendedWarranty,
                        None,
                        (self.warranty_end_day, end),
                        months,
                        0.1,
                    );
                }
            }
        }
    }
}
