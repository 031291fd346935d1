//! The customer view: a customer's stored state and current status as JSON, the one
//! shape `inspect` and the service's `/customers/{id}` show. Pure: no I/O.

use crate::core::policy::Policy;
use crate::core::state::CustomerState;
use crate::core::time::Ts;
use std::collections::BTreeMap;

/// A customer's state and status at stream time `at`, as JSON (`inspect` and the
/// service's `/customers/{id}`).
pub fn customer_json(state: &CustomerState, at: Option<Ts>, policy: &Policy) -> serde_json::Value {
    let assessment = at.and_then(|t| state.assess(t, policy));
    serde_json::json!({
        "customer_id": state.customer_id,
        "stream_time": at.map(Ts::to_rfc3339),
        "current": assessment.as_ref().map(|a| serde_json::json!({
            "level": a.status.level,
            "lifecycle": a.status.lifecycle,
            "tier": a.status.tier,
            "cell": a.status.cell(),
            "days_since_last_visit": a.days_since_last_visit,
            "reasons": a.reasons,
        })),
        "published": state.status.map(|s| serde_json::json!({
            "level": s.level, "lifecycle": s.lifecycle, "tier": s.tier, "cell": s.cell(),
            "since": state.status_since.map(Ts::to_rfc3339),
            "last_change": state.last_change.map(Ts::to_rfc3339),
        })),
        "predictions": at.and_then(|t| state.predictions(t, policy)),
        "effective_customer": at.is_some_and(|t| state.is_effective(t)),
        "next_timer": state.next_deadline.map(Ts::to_rfc3339),
        "visits": {
            "first": state.first_visit.map(Ts::to_rfc3339),
            "last": state.last_visit.map(Ts::to_rfc3339),
            "visit_days": state.visit_day_count,
            "mean_interval_days": state.mean_interval_days(),
            "visit_days_in_value_window": state.window_visits(policy),
        },
        "spend": {
            "value_window": state.window_spend(),
            "lifetime": state.lifetime_spend_cents as f64 / 100.0,
            "repair_orders": state.ro_count,
            "average_repair_order": state.avg_ro_value(),
            "ro_mix": crate::core::event::RoType::ALL.iter().map(|t| (t.as_str(), state.ro_mix[t.index()])).collect::<BTreeMap<_, _>>(),
        },
        "odometer": {
            "last_km": state.last_odometer.map(|o| o.km),
            "km_per_day": state.km_per_day(policy),
            "last_maintenance": state.last_maintenance.map(|m| serde_json::json!({"time": m.time.to_rfc3339(), "km": m.km})),
        },
        "vehicles": state.vehicles.iter().map(|v| serde_json::json!({
            "vin": v.vin, "model": v.model, "purchase_date": v.purchase_date.map(Ts::to_date_string)})).collect::<Vec<_>>(),
        "contracts": state.contracts.iter().map(|c| serde_json::json!({
            "contract_id": c.contract_id, "contract_type": c.contract_type, "action": c.action,
            "start": c.start.map(Ts::to_date_string), "end": c.end.map(Ts::to_date_string),
            "amount": c.amount_cents as f64 / 100.0})).collect::<Vec<_>>(),
        "in_service_region": state.in_service_region.map(|(_, b)| b),
        "event_participations": state.event_participations,
        "dealer_id": state.dealer_id,
    })
}
