//! The drills page's trend chart: one figure's achieved values over the drills, oldest first,
//! against its target line. Plain SVG, no script.

use maud::{Markup, html};

use crate::fmt::{figure, wall};

/// One drill's point.
pub(crate) struct Point {
    pub at_ms: i64,
    pub run: String,
    pub achieved: Option<f64>,
    pub target: Option<f64>,
    /// `met`, `missed`, …
    pub verdict: String,
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 74.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// `points` oldest first.
pub(crate) fn trend(id: &str, name: &str, unit: &str, points: &[Point]) -> Markup {
    let measured: Vec<(usize, &Point, f64)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.achieved.map(|a| (i, p, a)))
        .collect();
    let top = points
        .iter()
        .flat_map(|p| [p.achieved, p.target])
        .flatten()
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let n = points.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + (W - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
    let line: String = measured
        .iter()
        .map(|(i, _, a)| format!("{:.1},{:.1}", x(*i), y(*a)))
        .collect::<Vec<_>>()
        .join(" ");
    let targets: Vec<(usize, f64)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.target.map(|t| (i, t)))
        .collect();
    let met = measured
        .iter()
        .filter(|(_, p, _)| p.verdict == "met")
        .count();
    let desc = format!(
        "{name} of {} drill(s), oldest first: {} measured, {met} met the target{}.",
        points.len(),
        measured.len(),
        targets
            .last()
            .map(|(_, t)| format!(" of {}", figure(*t, unit)))
            .unwrap_or_default()
    );
    html! {
        figure {
            svg.chart viewBox={"0 0 " (W) " " (H)} role="img" aria-labelledby={(id) "-t " (id) "-d"} data-figure=(name) {
                title id={(id) "-t"} { (name) " trend" }
                desc id={(id) "-d"} { (desc) }
                @for frac in [0.0, 0.5, 1.0] {
                    @let v = top / 1.1 * frac;
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(v))) y2=(format!("{:.1}", y(v))) {}
                    text x=(LEFT - 6.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" { (figure(v, unit)) }
                }
                @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                    text x=(LEFT) y=(H - 10.0) { (wall(first.at_ms)) }
                    @if n > 1 { text x=(W - RIGHT) y=(H - 10.0) text-anchor="end" { (wall(last.at_ms)) } }
                }
                @if targets.len() == 1 {
                    line.target x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(targets[0].1))) y2=(format!("{:.1}", y(targets[0].1))) {}
                } @else if !targets.is_empty() {
                    polyline.target fill="none" points=(targets.iter().map(|(i, t)| format!("{:.1},{:.1}", x(*i), y(*t))).collect::<Vec<_>>().join(" ")) {}
                }
                @if measured.len() > 1 { polyline.line points=(line) {} }
                @for (i, p, a) in &measured {
                    circle cx=(format!("{:.1}", x(*i))) cy=(format!("{:.1}", y(*a))) r="4.5"
                        class=(match p.verdict.as_str() { "met" => "met", "missed" => "missed", _ => "other" }) {
                        title { (wall(p.at_ms)) " — run " (p.run) ": " (figure(*a, unit))
                            @if let Some(t) = p.target { " (target " (figure(t, unit)) ")" } ", " (p.verdict) }
                    }
                }
            }
            figcaption.muted { (desc) " The dashed line is the target." }
        }
    }
}
