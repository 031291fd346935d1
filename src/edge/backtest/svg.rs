//! Small inline SVG charts for the backtest report: lines over months, grouped bars,
//! ranges (p10–median–p90), a labelled scatter and a heat map. Each returns one
//! `<svg>` element as text, with no external reference, so the report stays one
//! self-contained file. Pure string building.

use std::fmt::Write;

/// Colours of the series, in order.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const W: f64 = 560.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A "nice" upper bound for an axis holding `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let digits = if v.abs() >= 1.0 { 1 } else { 3 };
        let s = format!("{v:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn open(out: &mut String, title: &str, height: f64) {
    let _ = write!(
        out,
        r#"<svg width="{W}" height="{height}" viewBox="0 0 {W} {height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11"><text x="{LEFT}" y="18" font-size="13" font-weight="bold">{t}</text>"#,
        t = esc(title)
    );
}

/// The y axis from `lo` to `hi` with gridlines; returns the mapping of a value to y.
fn y_axis(out: &mut String, lo: f64, hi: f64, label: &str) -> impl Fn(f64) -> f64 {
    let plot_h = H - TOP - BOTTOM;
    let map = move |v: f64| TOP + plot_h - (v - lo) / (hi - lo) * plot_h;
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let y = map(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    let _ = write!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(label)
    );
    map
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, n) in names.iter().enumerate().take(16) {
        let y = TOP + 14.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{}" y="{:.1}">{}</text>"#,
            W - RIGHT + 10.0,
            y,
            colour(i),
            W - RIGHT + 24.0,
            y + 9.0,
            esc(&truncate(n, 18))
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn no_data(out: &mut String) {
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no data</text>"##,
        W / 2.0,
        H / 2.0
    );
}

/// Lines over categorical x values (e.g. months); a None breaks a line.
pub fn lines(
    title: &str,
    y_label: &str,
    x: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let mut out = String::new();
    open(&mut out, title, H);
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    if x.is_empty() || series.is_empty() {
        no_data(&mut out);
        out.push_str("</svg>");
        return out;
    }
    let hi = nice_max(max);
    let y = y_axis(&mut out, 0.0, hi, y_label);
    let plot_w = W - LEFT - RIGHT;
    let step = if x.len() > 1 {
        plot_w / (x.len() - 1) as f64
    } else {
        0.0
    };
    let xpos = |i: usize| LEFT + step * i as f64;
    let every = x.len().div_ceil(7).max(1);
    for (i, label) in x.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                xpos(i),
                H - BOTTOM + 16.0,
                esc(label)
            );
        }
    }
    for (k, (_, vals)) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen_up = true;
        for (i, v) in vals.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_up { "M" } else { "L" },
                        xpos(i),
                        y(*v)
                    );
                    pen_up = false;
                }
                None => pen_up = true,
            }
        }
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"/>"#,
            d.trim_end(),
            colour(k)
        );
    }
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

/// Grouped vertical bars: one group per category, one bar per series; `fixed_max`
/// fixes the axis (e.g. 1 for shares). A value label sits on each bar.
pub fn bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
    fixed_max: Option<f64>,
    marker: Option<(usize, &str)>,
) -> String {
    let rotate = categories.len() > 8;
    let mut out = String::new();
    open(&mut out, title, if rotate { H + 70.0 } else { H });
    if categories.is_empty() || series.is_empty() {
        no_data(&mut out);
        out.push_str("</svg>");
        return out;
    }
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let hi = fixed_max.unwrap_or_else(|| nice_max(max));
    let y = y_axis(&mut out, 0.0, hi, y_label);
    let plot_w = W - LEFT - RIGHT;
    let group_w = plot_w / categories.len() as f64;
    let bar_w = (group_w * 0.8 / series.len() as f64).max(1.0);
    if let Some((i, text)) = marker {
        let x = LEFT + group_w * i as f64;
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#999" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" fill="#666">{}</text>"##,
            H - BOTTOM,
            x + 3.0,
            TOP + 10.0,
            esc(text)
        );
    }
    for (c, label) in categories.iter().enumerate() {
        let gx = LEFT + group_w * c as f64 + group_w * 0.1;
        let lx = LEFT + group_w * (c as f64 + 0.5);
        if rotate {
            let ly = H - BOTTOM + 10.0;
            let _ = write!(
                out,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-40 {lx:.1} {ly:.1})">{}</text>"#,
                esc(&truncate(label, 22))
            );
        } else {
            let _ = write!(
                out,
                r#"<text x="{lx:.1}" y="{}" text-anchor="middle">{}</text>"#,
                H - BOTTOM + 16.0,
                esc(&truncate(label, 14))
            );
        }
        for (k, (_, vals)) in series.iter().enumerate() {
            let Some(v) = vals.get(c).copied().flatten() else {
                continue;
            };
            let x = gx + bar_w * k as f64;
            let top = y(v.min(hi));
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                (bar_w - 1.0).max(1.0),
                (H - BOTTOM - top).max(0.0),
                colour(k),
                esc(&series[k].0),
                fmt_tick(v)
            );
            if bar_w >= 26.0 {
                let _ = write!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                    x + bar_w / 2.0,
                    top - 3.0,
                    fmt_tick(v)
                );
            }
        }
    }
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

/// One row of [`ranges`]: a label and (p10, median, p90), if known.
pub type Range = (String, Option<(f64, f64, f64)>);

/// Horizontal ranges: per row a bar from p10 to p90 with the median marked, e.g. lead
/// times. Rows without a value show "no data".
pub fn ranges(title: &str, x_label: &str, rows: &[Range]) -> String {
    let row_h = 22.0;
    let height = TOP + BOTTOM + row_h * rows.len().max(1) as f64;
    let mut out = String::new();
    open(&mut out, title, height);
    let lo = rows
        .iter()
        .filter_map(|r| r.1)
        .fold(0.0f64, |a, r| a.min(r.0));
    let hi = nice_max(
        rows.iter()
            .filter_map(|r| r.1)
            .fold(0.0f64, |a, r| a.max(r.2)),
    );
    let left = 170.0;
    let plot_w = W - left - 30.0;
    let x = |v: f64| left + (v - lo) / (hi - lo) * plot_w;
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{TOP}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x(v),
            x(v),
            height - BOTTOM,
            x(v),
            height - BOTTOM + 14.0,
            fmt_tick(v)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 8.0,
        esc(x_label)
    );
    for (i, (label, r)) in rows.iter().enumerate() {
        let cy = TOP + row_h * i as f64 + row_h / 2.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            cy + 4.0,
            esc(&truncate(label, 30))
        );
        match r {
            Some((p10, med, p90)) => {
                let _ = write!(
                    out,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="10" fill="{}" opacity="0.55"><title>p10 {} · median {} · p90 {}</title></rect><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="9">{}</text>"##,
                    x(*p10),
                    cy - 5.0,
                    (x(*p90) - x(*p10)).max(1.0),
                    colour(i),
                    fmt_tick(*p10),
                    fmt_tick(*med),
                    fmt_tick(*p90),
                    x(*med),
                    x(*med),
                    cy - 8.0,
                    cy + 8.0,
                    x(*p90) + 4.0,
                    cy + 4.0,
                    fmt_tick(*med)
                );
            }
            None => {
                let _ = write!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" fill="#888">no confirmed warnings</text>"##,
                    left + 4.0,
                    cy + 4.0
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// A scatter of labelled points (x and y), e.g. precision against recall per policy.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(String, f64, f64)],
    unit_square: bool,
) -> String {
    let mut out = String::new();
    open(&mut out, title, H);
    if points.is_empty() {
        no_data(&mut out);
        out.push_str("</svg>");
        return out;
    }
    let (xmax, ymax) = if unit_square {
        (1.0, 1.0)
    } else {
        (
            nice_max(points.iter().fold(0.0f64, |a, p| a.max(p.1))),
            nice_max(points.iter().fold(0.0f64, |a, p| a.max(p.2))),
        )
    };
    let y = y_axis(&mut out, 0.0, ymax, y_label);
    let plot_w = W - LEFT - RIGHT;
    let x = |v: f64| LEFT + v / xmax * plot_w;
    for i in 0..=4 {
        let v = xmax * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(v),
            H - BOTTOM + 16.0,
            fmt_tick(v)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        H - 8.0,
        esc(x_label)
    );
    for (i, (label, px, py)) in points.iter().enumerate() {
        let _ = write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}"><title>{}: {} / {}</title></circle><text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
            x(*px),
            y(*py),
            colour(i),
            esc(label),
            fmt_tick(*px),
            fmt_tick(*py),
            x(*px) + 7.0,
            y(*py) - 5.0,
            esc(&truncate(label.rsplit('=').next().unwrap_or(label), 12))
        );
    }
    let names: Vec<&str> = points.iter().map(|p| p.0.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

/// A heat map: `values[r][c]` shaded from white to `base` by its share of the largest,
/// with `labels[r][c]` written in each cell.
pub fn heatmap(
    title: &str,
    rows: &[&str],
    cols: &[&str],
    values: &[Vec<f64>],
    labels: &[Vec<String>],
) -> String {
    let cell_w = 190.0;
    let cell_h = 84.0;
    let left = 120.0;
    let width = left + cell_w * cols.len() as f64 + 20.0;
    let height = TOP + 24.0 + cell_h * rows.len() as f64 + 10.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11"><text x="10" y="18" font-size="13" font-weight="bold">{t}</text>"#,
        t = esc(title)
    );
    let max = values
        .iter()
        .flatten()
        .fold(0.0f64, |a, b| a.max(*b))
        .max(f64::MIN_POSITIVE);
    for (c, name) in cols.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            left + cell_w * (c as f64 + 0.5),
            TOP + 14.0,
            esc(name)
        );
    }
    for (r, name) in rows.iter().enumerate() {
        let y0 = TOP + 24.0 + cell_h * r as f64;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            left - 8.0,
            y0 + cell_h / 2.0 + 4.0,
            esc(name)
        );
        for c in 0..cols.len() {
            let v = values.get(r).and_then(|x| x.get(c)).copied().unwrap_or(0.0);
            let share = (v / max).clamp(0.0, 1.0);
            // White to a deep orange.
            let mix = |full: f64| (255.0 - (255.0 - full) * share).round() as u8;
            let fill = format!("#{:02x}{:02x}{:02x}", mix(217.0), mix(95.0), mix(2.0));
            let text_colour = if share > 0.6 { "#fff" } else { "#000" };
            let x0 = left + cell_w * c as f64;
            let _ = write!(
                out,
                r##"<rect x="{x0:.1}" y="{y0:.1}" width="{cell_w}" height="{cell_h}" fill="{fill}" stroke="#fff" stroke-width="2"/>"##
            );
            let label = labels
                .get(r)
                .and_then(|x| x.get(c))
                .cloned()
                .unwrap_or_default();
            for (k, line) in label.lines().enumerate() {
                let _ = write!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{text_colour}">{}</text>"#,
                    x0 + cell_w / 2.0,
                    y0 + 18.0 + 14.0 * k as f64,
                    esc(line)
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_single_svg_elements_with_escaped_text() {
        let x = vec!["2024-01".to_string(), "2024-02".to_string()];
        let s = lines("a <b>", "n", &x, &[("p&q".into(), vec![Some(1.0), None])]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("a &lt;b&gt;") && s.contains("p&amp;q"));
        let b = bars(
            "t",
            "y",
            &x,
            &[("s".into(), vec![Some(0.5), Some(2.0)])],
            Some(1.0),
            None,
        );
        assert_eq!(b.matches("<rect").count(), 3, "two bars and one legend box");
        let r = ranges(
            "t",
            "days",
            &[("a".into(), Some((1.0, 2.0, 3.0))), ("b".into(), None)],
        );
        assert!(r.contains("no confirmed warnings"));
        let h = heatmap(
            "t",
            &["A"],
            &["D", "G"],
            &[vec![1.0, 0.0]],
            &[vec!["1".into(), "0".into()]],
        );
        assert!(h.contains("#d95f02") && h.contains("#ffffff"));
        assert_eq!(nice_max(0.73), 1.0);
        assert_eq!(
            [0.025, 0.075, 0.5, 62.5, 1250.0].map(fmt_tick),
            ["0.025", "0.075", "0.5", "62.5", "1250"]
        );
        assert_eq!(nice_max(130.0), 200.0);
    }
}
