//! Writes a [`Backtest`] as a report directory: `summary.json` (everything), CSV
//! tables (the same numbers, one table per file) and `report.html` (one self-contained
//! page: tables, inline SVG charts from [`super::svg`], a sentence per number), and
//! renders the short comparison table the command prints.
//!
//! Touches only the directory it is given.

use super::eval::{LevelStats, WarnLevel};
use super::kpis::ALL_DEALERS;
use super::svg::{self, esc};
use super::{Backtest, BacktestError, PolicyResult};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// The files every report directory holds (`detection.csv` too with a ground truth).
pub const FILES: [&str; 11] = [
    "summary.json",
    "report.html",
    "policies.csv",
    "workload_monthly.csv",
    "workload_by_dealer.csv",
    "kpi_monthly.csv",
    "kpi_annual.csv",
    "churn_by_group.csv",
    "segment_matrix.csv",
    "segment_matrix_monthly.csv",
    "lifecycle_flows.csv",
];

/// What each reported number means, one sentence each (in `summary.json` and the
/// page).
pub const DEFINITIONS: [(&str, &str); 14] = [
    ("warnings", "How many times customers entered this level: an episode starts when a customer leaves `normal` (level `any`), and counts once for each level it reaches."),
    ("precision", "Of the warnings whose outcome the history shows, the share followed by churn (12 months without a visit) before the customer's next visit."),
    ("came_back_share", "Of those warnings, the share that ended with the customer visiting again on their own (1 − precision): the calls or vouchers a campaign would have spent on customers who were not leaving."),
    ("censored", "Warnings too close to the end of the history to know whether the customer churned: counted, never guessed."),
    ("churns", "Customers reaching 12 months without a visit inside the window (a customer can churn, come back and churn again)."),
    ("recall", "Of those churns, the share where the customer was at this level at some point between their last visit and the churn instant."),
    ("lead_days", "Churn instant − warning instant of confirmed warnings, in days (p10, median, p90): how long a campaign had to act; 0 means the warning came exactly when the customer churned."),
    ("per_1000_per_month", "Warnings per 1,000 customers per month: the campaign workload (customers = those with at least one event by that month)."),
    ("effective_customers", "Customers who visited within the last 12 months and live in the dealer's service region, or live outside it and visited on more than one day in those 12 months."),
    ("monthly_churn_rate", "For month N: 1 − (effective customers who visited in month N−12 and again in months N−11..N) / (effective customers who visited in month N−12)."),
    ("annual_churn_rate", "For year Y: 1 − (effective customers at the end of Y−1 who visited during Y) / (effective customers at the end of Y−1)."),
    ("segment_matrix", "Customers and their value (spend in the 12 months up to their last visit, CNY) per loyalty row (A normal, B prevent/retain, C win back) × value tier (D, G, S) at the end of the history, with the instruments recommended for the cell."),
    ("detection_delay", "With the generator's ground truth: days from a customer's latent drop-out until they were first at this level (0 if they already were)."),
    ("false_alarms_per_1000_customer_years", "With the ground truth: warnings to customers who had not dropped out, per 1,000 customer-years of activity."),
];

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn csv_opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn lead(s: &LevelStats) -> String {
    match (s.lead_days_median, s.lead_days_p10, s.lead_days_p90) {
        (Some(m), Some(a), Some(b)) => format!("{m:.0} ({a:.0}–{b:.0})"),
        _ => "–".into(),
    }
}

/// The comparison table printed on stdout: one row per policy and level.
pub fn comparison_table(bt: &Backtest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} customers, history {} .. {}{}",
        bt.customers,
        &bt.history_start[..10.min(bt.history_start.len())],
        &bt.history_end[..10.min(bt.history_end.len())],
        bt.window_from.as_deref().map_or(String::new(), |f| format!(
            ", counted from {}",
            &f[..10.min(f.len())]
        ))
    );
    let name_w = bt
        .policies
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:name_w$}  {:8}  {:>8}  {:>9}  {:>9}  {:>7}  {:>18}  {:>10}  {:>8}",
        "policy",
        "level",
        "warnings",
        "precision",
        "came back",
        "recall",
        "lead days med(p10–p90)",
        "per 1k/mo",
        "censored"
    );
    for p in &bt.policies {
        for s in &p.evaluation.levels {
            let _ = writeln!(
                out,
                "{:name_w$}  {:8}  {:>8}  {:>9}  {:>9}  {:>7}  {:>22}  {:>10}  {:>8}",
                p.name,
                s.level.as_str(),
                s.warnings,
                pct(s.precision),
                pct(s.came_back_share),
                pct(s.recall),
                lead(s),
                num(s.per_1000_per_month, 1),
                s.censored
            );
        }
    }
    out
}

/// Writes every file of the report into `dir` (created if missing).
pub fn write(bt: &Backtest, dir: &Path) -> Result<(), BacktestError> {
    std::fs::create_dir_all(dir).map_err(super::io("cannot create report directory", dir))?;
    let put = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(super::io("cannot write", &path))
    };
    let defs: serde_json::Map<String, serde_json::Value> = DEFINITIONS
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let mut json = serde_json::to_value(bt).expect("a backtest serialises");
    json["definitions"] = serde_json::Value::Object(defs);
    put(
        "summary.json",
        serde_json::to_string_pretty(&json).expect("JSON serialises"),
    )?;
    for (name, body) in csv_tables(bt) {
        put(name, body)?;
    }
    put("report.html", html(bt))
}

/// The CSV tables, by file name.
pub fn csv_tables(bt: &Backtest) -> Vec<(&'static str, String)> {
    let mut policies = String::from("policy,level,warnings,confirmed,came_back,censored,precision,came_back_share,churns,churns_warned,recall,lead_days_p10,lead_days_median,lead_days_p90,warnings_per_1000_customers_per_month\n");
    let mut workload = String::from(
        "policy,month,customers,warnings_any,warnings_prevent,warnings_retain,warnings_win_back\n",
    );
    let mut by_dealer = String::from("policy,dealer,customers,level,warnings,warnings_per_month,warnings_per_1000_customers_per_month\n");
    let mut matrix = String::from("policy,cell,customers,value,instruments\n");
    let mut flows = String::from("policy,month,from,to,customers\n");
    let mut matrix_monthly = String::from("policy,month,dealer,cell,customers,value\n");
    let names = super::segments::cell_names();
    let mut truth = String::from("policy,level,dropouts,detected,detected_share,delay_days_p10,delay_days_median,delay_days_p90,false_alarms,active_customer_years,false_alarms_per_1000_customer_years\n");
    for p in &bt.policies {
        let name = csv_field(&p.name);
        for s in &p.evaluation.levels {
            let _ = writeln!(
                policies,
                "{name},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                s.level.as_str(),
                s.warnings,
                s.confirmed,
                s.came_back,
                s.censored,
                csv_opt(s.precision),
                csv_opt(s.came_back_share),
                s.churns,
                s.churns_warned,
                csv_opt(s.recall),
                csv_opt(s.lead_days_p10),
                csv_opt(s.lead_days_median),
                csv_opt(s.lead_days_p90),
                csv_opt(s.per_1000_per_month)
            );
        }
        for m in &p.evaluation.monthly {
            let w = m.warnings;
            let _ = writeln!(
                workload,
                "{name},{},{},{},{},{},{}",
                m.month, m.customers, w[0], w[1], w[2], w[3]
            );
        }
        for d in &p.evaluation.by_dealer {
            for l in WarnLevel::ALL {
                let k = l.index();
                let _ = writeln!(
                    by_dealer,
                    "{name},{},{},{},{},{},{}",
                    csv_field(&d.dealer),
                    d.customers,
                    l.as_str(),
                    d.warnings[k],
                    d.per_month[k],
                    csv_opt(d.per_1000_per_month[k])
                );
            }
        }
        for c in &p.segment_matrix {
            let _ = writeln!(
                matrix,
                "{name},{},{},{:.2},{}",
                c.cell,
                c.customers,
                c.value,
                c.instruments.join(";")
            );
        }
        for m in &p.segment_matrix_monthly {
            for (i, cell) in names.iter().enumerate() {
                let _ = writeln!(
                    matrix_monthly,
                    "{name},{},{},{cell},{},{:.2}",
                    m.month,
                    csv_field(&m.dealer),
                    m.customers[i],
                    m.value[i]
                );
            }
        }
        for f in &p.lifecycle_flows {
            let _ = writeln!(
                flows,
                "{name},{},{},{},{}",
                f.month,
                f.from.as_str(),
                f.to.as_str(),
                f.customers
            );
        }
        for t in p.ground_truth.iter().flatten() {
            let _ = writeln!(
                truth,
                "{name},{},{},{},{},{},{},{},{},{},{}",
                t.level.as_str(),
                t.dropouts,
                t.detected,
                csv_opt(t.detected_share),
                csv_opt(t.delay_days_p10),
                csv_opt(t.delay_days_median),
                csv_opt(t.delay_days_p90),
                t.false_alarms,
                t.active_customer_years,
                csv_opt(t.false_alarms_per_1000_customer_years)
            );
        }
    }
    let mut monthly = String::from("month,dealer,effective_customers,cohort,retained,churn_rate\n");
    for m in &bt.kpis.monthly {
        let _ = writeln!(
            monthly,
            "{},{},{},{},{},{}",
            m.month,
            csv_field(&m.dealer),
            m.effective_customers,
            m.cohort,
            m.retained,
            csv_opt(m.churn_rate)
        );
    }
    let mut annual = String::from("year,dealer,base,visited,churn_rate\n");
    for y in &bt.kpis.annual {
        let _ = writeln!(
            annual,
            "{},{},{},{},{}",
            y.year,
            csv_field(&y.dealer),
            y.base,
            y.visited,
            csv_opt(y.churn_rate)
        );
    }
    let mut groups = String::from("dimension,group,base,churned,churn_rate\n");
    for g in &bt.kpis.churn_by {
        let _ = writeln!(
            groups,
            "{},{},{},{},{}",
            g.dimension,
            csv_field(&g.group),
            g.base,
            g.churned,
            csv_opt(g.churn_rate)
        );
    }
    let mut out = vec![
        ("policies.csv", policies),
        ("workload_monthly.csv", workload),
        ("workload_by_dealer.csv", by_dealer),
        ("kpi_monthly.csv", monthly),
        ("kpi_annual.csv", annual),
        ("churn_by_group.csv", groups),
        ("segment_matrix.csv", matrix),
        ("segment_matrix_monthly.csv", matrix_monthly),
        ("lifecycle_flows.csv", flows),
    ];
    if bt.policies.iter().any(|p| p.ground_truth.is_some()) {
        out.push(("detection.csv", truth));
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1180px;margin:20px auto;padding:0 16px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}\
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}p.note{color:#555;font-size:13px;max-width:900px}\
dl,ul{font-size:13px}dt{font-weight:bold;margin-top:6px}dd{margin-left:18px}.charts{display:flex;flex-wrap:wrap;gap:10px}";

fn level_rows(p: &PolicyResult) -> impl Iterator<Item = &LevelStats> {
    p.evaluation.levels.iter()
}

/// The page.
pub fn html(bt: &Backtest) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>churnwatch backtest</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>churnwatch backtest</h1><p class=\"note\">{} customers, {} records ({} invalid, {} implausible, {} after the end) from {}. History {} to {}{}. Churn = 12 months without a visit; every warning is judged on what the history shows afterwards.</p>",
        bt.customers,
        bt.totals.records,
        bt.totals.invalid,
        bt.totals.implausible,
        bt.totals.after_to,
        esc(&bt.inputs.join(", ")),
        esc(&bt.history_start),
        esc(&bt.history_end),
        bt.window_from
            .as_deref()
            .map_or(String::new(), |f| format!(", warnings and churns counted from {}", esc(f)))
    );

    // 1. The comparison table.
    h.push_str("<h2>Policy comparison</h2><table><tr><th class=\"l\">policy</th><th class=\"l\">level</th><th>warnings</th><th>precision</th><th>came back</th><th>censored</th><th>churns</th><th>recall</th><th>lead days median (p10–p90)</th><th>warnings per 1,000 customers per month</th></tr>");
    for p in &bt.policies {
        for s in level_rows(p) {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.name),
                s.level.as_str(),
                s.warnings,
                pct(s.precision),
                pct(s.came_back_share),
                s.censored,
                s.churns,
                pct(s.recall),
                lead(s),
                num(s.per_1000_per_month, 2)
            );
        }
    }
    h.push_str("</table><p class=\"note\">Compare policies at equal workload: a policy that warns everyone has perfect recall. `any` is the start of an episode, whatever its level.</p><h3>Reading the table</h3><ul>");
    for p in &bt.policies {
        for s in level_rows(p) {
            let _ = write!(h, "<li>{}</li>", esc(&sentence(&p.name, s)));
        }
    }
    h.push_str("</ul>");
    definitions(
        &mut h,
        &[
            "warnings",
            "precision",
            "came_back_share",
            "censored",
            "churns",
            "recall",
            "lead_days",
            "per_1000_per_month",
        ],
    );

    // 2. Sweep.
    if !bt.sweep_keys.is_empty() {
        let _ = write!(
            h,
            "<h2>Sweep of {}</h2><p class=\"note\">Each point is one value of the swept key. Pick the value whose precision and recall you can afford, at a lead time long enough for a campaign.</p><div class=\"charts\">",
            esc(&bt.sweep_keys.join(" × "))
        );
        for level in [WarnLevel::Any, WarnLevel::Prevent] {
            let pts: Vec<(String, f64, f64)> = bt
                .policies
                .iter()
                .filter_map(|p| {
                    let s = &p.evaluation.levels[level.index()];
                    Some((p.name.clone(), s.recall?, s.precision?))
                })
                .collect();
            h.push_str(&svg::scatter(
                &format!("Precision against recall ({})", level.as_str()),
                "recall",
                "precision",
                &pts,
                false,
            ));
            let pts: Vec<(String, f64, f64)> = bt
                .policies
                .iter()
                .filter_map(|p| {
                    let s = &p.evaluation.levels[level.index()];
                    Some((p.name.clone(), s.lead_days_median?.max(0.0), s.precision?))
                })
                .collect();
            h.push_str(&svg::scatter(
                &format!("Precision against median lead time ({})", level.as_str()),
                "median lead time (days)",
                "precision",
                &pts,
                false,
            ));
        }
        h.push_str("</div>");
    }

    // 3. Precision, recall, lead time per policy and level.
    h.push_str("<h2>Precision, recall and lead time</h2><div class=\"charts\">");
    let levels: Vec<String> = WarnLevel::ALL
        .iter()
        .map(|l| l.as_str().to_string())
        .collect();
    let per_policy = |f: &dyn Fn(&LevelStats) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
        bt.policies
            .iter()
            .map(|p| (p.name.clone(), level_rows(p).map(f).collect()))
            .collect()
    };
    h.push_str(&svg::bars(
        "Precision by level",
        "precision",
        &levels,
        &per_policy(&|s| s.precision),
        Some(1.0),
        None,
    ));
    h.push_str(&svg::bars(
        "Recall by level",
        "recall",
        &levels,
        &per_policy(&|s| s.recall),
        Some(1.0),
        None,
    ));
    let rows: Vec<svg::Range> = bt
        .policies
        .iter()
        .flat_map(|p| {
            level_rows(p).map(move |s| {
                (
                    format!("{} · {}", p.name, s.level.as_str()),
                    match (s.lead_days_p10, s.lead_days_median, s.lead_days_p90) {
                        (Some(a), Some(m), Some(b)) => Some((a, m, b)),
                        _ => None,
                    },
                )
            })
        })
        .collect();
    h.push_str(&svg::ranges(
        "Lead time of confirmed warnings (p10 – median – p90)",
        "days before the churn instant",
        &rows,
    ));
    if let Some(first) = bt.policies.first() {
        let months: Vec<String> = first
            .evaluation
            .monthly
            .iter()
            .map(|m| m.month.clone())
            .collect();
        let series: Vec<(String, Vec<Option<f64>>)> = bt
            .policies
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.evaluation
                        .monthly
                        .iter()
                        .map(|m| {
                            (m.customers > 0)
                                .then(|| m.warnings[0] as f64 * 1000.0 / m.customers as f64)
                        })
                        .collect(),
                )
            })
            .collect();
        h.push_str(&svg::lines(
            "Workload: new warning episodes per 1,000 customers, month by month",
            "per 1,000 customers",
            &months,
            &series,
        ));
    }
    h.push_str("</div>");
    dealer_workload(&mut h, bt);

    // 4. KPIs over time.
    kpi_section(&mut h, bt);

    // 5. Segment matrix per policy.
    h.push_str("<h2>Segment matrix at the end of the history</h2><div class=\"charts\">");
    let tiers = ["Diamond (D)", "Gold (G)", "Silver (S)"];
    let rows = ["A loyal", "B swinging", "C churned"];
    for p in &bt.policies {
        let mut values = vec![vec![0.0; 3]; 3];
        let mut labels = vec![vec![String::new(); 3]; 3];
        for (i, c) in p.segment_matrix.iter().enumerate().take(9) {
            let (r, k) = (i / 3, i % 3);
            values[r][k] = c.customers as f64;
            let mut label = format!(
                "{} · {} customers\nvalue {:.0} CNY",
                c.cell, c.customers, c.value
            );
            let mut line = String::new();
            for i in &c.instruments {
                if !line.is_empty() && line.len() + i.len() > 28 {
                    label.push('\n');
                    label.push_str(&line);
                    line.clear();
                }
                if !line.is_empty() {
                    line.push_str(", ");
                }
                line.push_str(i);
            }
            if !line.is_empty() {
                label.push('\n');
                label.push_str(&line);
            }
            labels[r][k] = label;
        }
        h.push_str(&svg::heatmap(
            &format!(
                "{} — customers per cell (shade), value and instruments",
                p.name
            ),
            &rows,
            &tiers,
            &values,
            &labels,
        ));
    }
    h.push_str("</div><div class=\"charts\">");
    for p in &bt.policies {
        let all: Vec<&super::segments::MatrixAt> = p
            .segment_matrix_monthly
            .iter()
            .filter(|m| m.dealer == ALL_DEALERS)
            .collect();
        let months: Vec<String> = all.iter().map(|m| m.month.clone()).collect();
        let series: Vec<(String, Vec<Option<f64>>)> = rows
            .iter()
            .enumerate()
            .map(|(r, name)| {
                let v = all
                    .iter()
                    .map(|m| Some(m.customers[r * 3..r * 3 + 3].iter().sum::<u64>() as f64))
                    .collect();
                (name.to_string(), v)
            })
            .collect();
        h.push_str(&svg::lines(
            &format!(
                "{}: customers per loyalty row at the start of each month",
                p.name
            ),
            "customers",
            &months,
            &series,
        ));
    }
    h.push_str("</div><p class=\"note\">Per dealer and cell, with values, month by month in <code>segment_matrix_monthly.csv</code>.</p>");
    definitions(&mut h, &["segment_matrix"]);

    // 6. Lifecycle flows.
    h.push_str("<h2>Flows between lifecycle stages</h2><p class=\"note\">Status changes that moved a customer from one lifecycle stage to another (active &lt; 6 months since the last visit, quasi-churned 6–12, churned 12–24, fully churned &gt; 24), in the window. Month by month in <code>lifecycle_flows.csv</code>.</p>");
    for p in &bt.policies {
        let mut totals: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut months: BTreeSet<String> = BTreeSet::new();
        for f in &p.lifecycle_flows {
            *totals
                .entry((f.from.as_str().into(), f.to.as_str().into()))
                .or_default() += f.customers;
            months.insert(f.month.clone());
        }
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th class=\"l\">from</th><th class=\"l\">to</th><th>moves</th><th>per month (average over {} months)</th></tr>",
            esc(&p.name),
            months.len()
        );
        for ((from, to), n) in &totals {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{from}</td><td class=\"l\">{to}</td><td>{n}</td><td>{:.1}</td></tr>",
                *n as f64 / months.len().max(1) as f64
            );
        }
        h.push_str("</table>");
        let months: Vec<String> = months.into_iter().collect();
        let series: Vec<(String, Vec<Option<f64>>)> = totals
            .keys()
            .map(|(from, to)| {
                let v = months
                    .iter()
                    .map(|m| {
                        let n: u64 = p
                            .lifecycle_flows
                            .iter()
                            .filter(|f| {
                                &f.month == m && f.from.as_str() == from && f.to.as_str() == to
                            })
                            .map(|f| f.customers)
                            .sum();
                        Some(n as f64)
                    })
                    .collect();
                let short = |l: &str| {
                    match l {
                        "quasi_churned" => "quasi",
                        "fully_churned" => "fully",
                        other => other,
                    }
                    .to_string()
                };
                (format!("{} → {}", short(from), short(to)), v)
            })
            .collect();
        h.push_str(&svg::lines(
            &format!("{}: lifecycle moves per month", p.name),
            "customers",
            &months,
            &series,
        ));
    }

    // 7. Ground truth.
    if bt.policies.iter().any(|p| p.ground_truth.is_some()) {
        h.push_str("<h2>Against the generator's ground truth</h2><table><tr><th class=\"l\">policy</th><th class=\"l\">level</th><th>drop-outs</th><th>detected</th><th>delay days median (p10–p90)</th><th>false alarms</th><th>per 1,000 active customer-years</th></tr>");
        for p in &bt.policies {
            for t in p.ground_truth.iter().flatten() {
                let delay = match (t.delay_days_median, t.delay_days_p10, t.delay_days_p90) {
                    (Some(m), Some(a), Some(b)) => format!("{m:.0} ({a:.0}–{b:.0})"),
                    _ => "–".into(),
                };
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.name),
                    t.level.as_str(),
                    t.dropouts,
                    pct(t.detected_share),
                    delay,
                    t.false_alarms,
                    num(t.false_alarms_per_1000_customer_years, 1)
                );
            }
        }
        h.push_str("</table>");
        definitions(
            &mut h,
            &["detection_delay", "false_alarms_per_1000_customer_years"],
        );
    }

    // 8. The policies themselves.
    h.push_str("<h2>The policies</h2>");
    for p in &bt.policies {
        let _ = write!(
            h,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(&p.name),
            esc(&p.policy_toml)
        );
    }
    h.push_str("</body></html>\n");
    h
}

/// One sentence saying what a row of the comparison table means.
pub fn sentence(policy: &str, s: &LevelStats) -> String {
    let level = match s.level {
        WarnLevel::Any => "warning episodes (any level)".to_string(),
        l => format!("`{}` warnings", l.as_str()),
    };
    let mut t = format!(
        "Under {policy}, {} {level} were raised ({} per 1,000 customers a month)",
        s.warnings,
        num(s.per_1000_per_month, 1)
    );
    match (s.precision, s.came_back_share) {
        (Some(p), Some(b)) => {
            let _ = write!(
                t,
                "; of the {} whose outcome is known, {} were followed by churn and {} came back on their own",
                s.confirmed + s.came_back,
                pct(Some(p)),
                pct(Some(b))
            );
        }
        _ => t.push_str("; none has a known outcome yet"),
    }
    if s.censored > 0 {
        let _ = write!(t, " ({} too recent to tell)", s.censored);
    }
    let _ = write!(
        t,
        ". They preceded {} of the {} churns",
        pct(s.recall),
        s.churns
    );
    if let Some(m) = s.lead_days_median {
        let _ = write!(t, ", with a median {m:.0} days between warning and churn");
    }
    t.push('.');
    t
}

/// The campaign workload per dealer: customers to contact per month, per policy.
fn dealer_workload(h: &mut String, bt: &Backtest) {
    let Some(first) = bt.policies.first() else {
        return;
    };
    h.push_str("<h3>Customers each dealer would have contacted per month</h3><p class=\"note\">New warning episodes (any level) and `prevent` warnings per month, averaged over the window, per dealer and policy.</p><table><tr><th class=\"l\">dealer</th><th>customers</th>");
    for p in &bt.policies {
        let _ = write!(
            h,
            "<th>{0} · episodes/month</th><th>{0} · prevent/month</th>",
            esc(&p.name)
        );
    }
    h.push_str("</tr>");
    for (i, d) in first.evaluation.by_dealer.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td>",
            esc(&d.dealer),
            d.customers
        );
        for p in &bt.policies {
            match p.evaluation.by_dealer.get(i) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td>{:.1}</td><td>{:.1}</td>",
                        x.per_month[WarnLevel::Any.index()],
                        x.per_month[WarnLevel::Prevent.index()]
                    );
                }
                None => h.push_str("<td>–</td><td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn definitions(h: &mut String, keys: &[&str]) {
    h.push_str("<dl>");
    for (k, v) in DEFINITIONS.iter().filter(|(k, _)| keys.contains(k)) {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl>");
}

/// The dealers with the most effective customers overall (at most `n`).
fn top_dealers(bt: &Backtest, n: usize) -> Vec<String> {
    let mut peak: BTreeMap<&str, u64> = BTreeMap::new();
    for m in bt.kpis.monthly.iter().filter(|m| m.dealer != ALL_DEALERS) {
        let e = peak.entry(m.dealer.as_str()).or_default();
        *e = (*e).max(m.effective_customers);
    }
    let mut v: Vec<(&str, u64)> = peak.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut top: Vec<String> = v.into_iter().take(n).map(|x| x.0.to_string()).collect();
    top.sort();
    top
}

fn kpi_section(h: &mut String, bt: &Backtest) {
    let k = &bt.kpis;
    h.push_str("<h2>KPIs over time</h2><p class=\"note\">These KPIs are defined on visits alone, so they are the same under every policy.</p><div class=\"charts\">");
    let months: Vec<String> = k
        .monthly
        .iter()
        .filter(|m| m.dealer == ALL_DEALERS)
        .map(|m| m.month.clone())
        .collect();
    let index: BTreeMap<&str, usize> = months
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let dealers = top_dealers(bt, 8);
    let series_of = |f: &dyn Fn(&super::kpis::MonthKpi) -> Option<f64>, who: &[String]| {
        who.iter()
            .map(|d| {
                let mut v = vec![None; months.len()];
                for m in k.monthly.iter().filter(|m| &m.dealer == d) {
                    if let Some(i) = index.get(m.month.as_str()) {
                        v[*i] = f(m);
                    }
                }
                (d.clone(), v)
            })
            .collect::<Vec<_>>()
    };
    let all = vec![ALL_DEALERS.to_string()];
    h.push_str(&svg::lines(
        "Effective customers, all dealers",
        "customers",
        &months,
        &series_of(&|m| Some(m.effective_customers as f64), &all),
    ));
    h.push_str(&svg::lines(
        "Monthly effective-customer churn rate, all dealers",
        "churn rate",
        &months,
        &series_of(&|m| m.churn_rate, &all),
    ));
    h.push_str(&svg::lines(
        "Effective customers per dealer (largest 8)",
        "customers",
        &months,
        &series_of(&|m| Some(m.effective_customers as f64), &dealers),
    ));
    h.push_str(&svg::lines(
        "Monthly effective-customer churn rate per dealer (largest 8)",
        "churn rate",
        &months,
        &series_of(&|m| m.churn_rate, &dealers),
    ));
    h.push_str("</div>");
    definitions(
        h,
        &[
            "effective_customers",
            "monthly_churn_rate",
            "annual_churn_rate",
        ],
    );

    // Annual rates: a table, dealers as rows and years as columns.
    let years: BTreeSet<i32> = k.annual.iter().map(|y| y.year).collect();
    if !years.is_empty() {
        h.push_str(
            "<h3>Annual effective-customer churn rate</h3><table><tr><th class=\"l\">dealer</th>",
        );
        for y in &years {
            let _ = write!(h, "<th>{y}</th>");
        }
        h.push_str("</tr>");
        let mut dealers: Vec<&str> = k.annual.iter().map(|y| y.dealer.as_str()).collect();
        dealers.sort_by_key(|d| (*d != ALL_DEALERS, *d));
        dealers.dedup();
        for d in dealers {
            let _ = write!(h, "<tr><td class=\"l\">{}</td>", esc(d));
            for y in &years {
                let cell = k
                    .annual
                    .iter()
                    .find(|a| a.dealer == d && a.year == *y)
                    .map_or("–".into(), |a| {
                        format!("{} <small>of {}</small>", pct(a.churn_rate), a.base)
                    });
                let _ = write!(h, "<td>{cell}</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    } else {
        h.push_str("<p class=\"note\">No complete year with a complete year before it: no annual rate.</p>");
    }

    // Churn by group.
    h.push_str("<h2>What churn depends on</h2><p class=\"note\">Customer-years: a customer effective at the end of a year churned in the next when no visit came in it (pooled over the complete years). The survey finds churn rising with vehicle age, sharply after the factory warranty ends.</p><div class=\"charts\">");
    for (dim, title) in [
        (
            "vehicle_age",
            "Churn by vehicle age (at the start of the year)",
        ),
        ("vehicle_model", "Churn by vehicle model"),
        ("dealer", "Churn by dealer"),
    ] {
        let mut groups: Vec<&super::kpis::GroupChurn> =
            k.churn_by.iter().filter(|g| g.dimension == dim).collect();
        if dim == "vehicle_age" {
            let order = |g: &str| {
                super::kpis::AGE_BANDS
                    .iter()
                    .position(|b| b.1 == g)
                    .unwrap_or(usize::MAX)
            };
            groups.sort_by_key(|g| order(&g.group));
        }
        let cats: Vec<String> = groups
            .iter()
            .map(|g| format!("{} ({})", g.group, g.base))
            .collect();
        let marker = (dim == "vehicle_age")
            .then(|| groups.iter().position(|g| g.group == "3-4y"))
            .flatten()
            .map(|i| (i, "warranty ends (36 months)"));
        h.push_str(&svg::bars(
            title,
            "churn rate",
            &cats,
            &[(
                "churn rate".into(),
                groups.iter().map(|g| g.churn_rate).collect(),
            )],
            None,
            marker,
        ));
    }
    h.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_says_what_the_numbers_mean() {
        let s = LevelStats {
            level: WarnLevel::Retain,
            warnings: 3,
            confirmed: 1,
            came_back: 1,
            censored: 1,
            precision: Some(0.5),
            came_back_share: Some(0.5),
            churns: 1,
            churns_warned: 1,
            recall: Some(1.0),
            lead_days_p10: Some(183.0),
            lead_days_median: Some(183.0),
            lead_days_p90: Some(183.0),
            per_1000_per_month: Some(63.83),
        };
        assert_eq!(
            sentence("A", &s),
            "Under A, 3 `retain` warnings were raised (63.8 per 1,000 customers a month); of the 2 whose outcome is known, 50.0% were followed by churn and 50.0% came back on their own (1 too recent to tell). They preceded 100.0% of the 1 churns, with a median 183 days between warning and churn."
        );
        assert_eq!(csv_field("a, b"), "\"a, b\"");
    }
}
