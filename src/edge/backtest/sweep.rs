//! Policy sweeps: `key=v1,v2,v3` over any numeric policy key (one or two keys), each
//! value (or pair of values) giving one policy derived from a base policy. Pure.

use crate::core::policy::Policy;
use serde_json::Value;

/// One swept key and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The dotted policy key, e.g. `prevent.cadence_factor`.
    pub key: String,
    /// The values, as given.
    pub values: Vec<String>,
}

impl Sweep {
    /// Parses `key=v1,v2,...`, checking that the key names a number in the policy and
    /// that every value is one of its kind (an integer for an integer key).
    pub fn parse(spec: &str) -> Result<Sweep, String> {
        let (key, values) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: expected KEY=V1,V2,..."))?;
        let key = key.trim().to_string();
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("`{spec}`: no values to sweep"));
        }
        let base = serde_json::to_value(Policy::default()).expect("a policy serialises");
        match lookup(&base, &key) {
            Some(Value::Number(n)) => {
                for v in &values {
                    number(v, n.is_f64()).map_err(|e| format!("{key}: {e}"))?;
                }
            }
            Some(_) => return Err(format!("{key} is not a numeric policy key")),
            None => {
                return Err(format!(
                    "{key} is not a policy key (see `churnwatch policy`)"
                ))
            }
        }
        Ok(Sweep { key, values })
    }
}

fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

fn number(v: &str, float: bool) -> Result<Value, String> {
    if float {
        let x: f64 = v.parse().map_err(|_| format!("`{v}` is not a number"))?;
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| format!("`{v}` is not a finite number"))
    } else {
        let x: i64 = v
            .parse()
            .map_err(|_| format!("`{v}` is not an integer (the key takes whole numbers)"))?;
        Ok(Value::from(x))
    }
}

/// `base` with `key` set to `value` (checked like a policy file).
pub fn with_value(base: &Policy, key: &str, value: &str) -> Result<Policy, String> {
    let mut v = serde_json::to_value(base).expect("a policy serialises");
    let slot = key
        .split('.')
        .try_fold(&mut v, |v, k| v.get_mut(k))
        .ok_or_else(|| format!("{key} is not a policy key"))?;
    let float = matches!(slot, Value::Number(n) if n.is_f64());
    *slot = number(value, float)?;
    let mut p: Policy = serde_json::from_value(v).map_err(|e| format!("{key}={value}: {e}"))?;
    p.check().map_err(|e| format!("{key}={value}: {e}"))?;
    p.model.clone_from(&base.model);
    Ok(p)
}

/// Every policy of the sweeps (the product of their values when two), named
/// `key=value` (joined by `, `), derived from `base`.
pub fn policies(base: &Policy, sweeps: &[Sweep]) -> Result<Vec<(String, Policy)>, String> {
    let mut out = vec![(String::new(), base.clone())];
    for s in sweeps {
        let mut next = Vec::new();
        for (name, p) in &out {
            for v in &s.values {
                let short = s.key.rsplit('.').next().unwrap_or(&s.key);
                let label = if name.is_empty() {
                    format!("{short}={v}")
                } else {
                    format!("{name}, {short}={v}")
                };
                next.push((label, with_value(p, &s.key, v)?));
            }
        }
        out = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checks_and_applies() {
        let s = Sweep::parse("prevent.cadence_factor=1.25, 2").unwrap();
        assert_eq!(s.values, vec!["1.25", "2"]);
        assert!(Sweep::parse("prevent.cadence_factor").is_err());
        assert!(Sweep::parse("prevent.nope=1").is_err());
        assert!(Sweep::parse("stream.earliest_event_date=1").is_err());
        assert!(Sweep::parse("lifecycle.churned_months=1.5").is_err());
        let t = Sweep::parse("lifecycle.quasi_churned_months=3,6").unwrap();
        let ps = policies(&Policy::default(), &[s, t]).unwrap();
        assert_eq!(ps.len(), 4);
        assert_eq!(ps[0].0, "cadence_factor=1.25, quasi_churned_months=3");
        assert_eq!(ps[0].1.prevent.cadence_factor, 1.25);
        assert_eq!(ps[3].1.lifecycle.quasi_churned_months, 6);
        assert_eq!(ps[3].1.prevent.cadence_factor, 2.0);
        // An inconsistent value is refused like in a policy file.
        let bad = Sweep::parse("lifecycle.quasi_churned_months=13").unwrap();
        assert!(policies(&Policy::default(), &[bad]).is_err());
    }
}
