//! The timeline: a time axis in wall-clock time and time since the start, one lane per step or
//! matrix leg, one bar per attempt, and the drill's fault and recovery markers with the RTO
//! window between them.

use maud::{Markup, html};

use crate::fmt::{clean, clock, dur, since};
use crate::timeline::Story;

/// Tick spacings to choose from, in ms.
const STEPS: &[i64] = &[
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
    120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000,
    86_400_000,
];

fn pct(x: i64, t0: i64, span: f64) -> f64 {
    ((x - t0) as f64 / span * 100.0).clamp(0.0, 100.0)
}

pub(crate) fn timeline(s: &Story<'_>) -> Markup {
    let span = (s.t_end - s.t0) as f64;
    let step = *STEPS
        .iter()
        .find(|&&st| (s.t_end - s.t0) / st <= 6)
        .unwrap_or(&86_400_000);
    let precise = step < 1000;
    let ticks: Vec<i64> = (0..)
        .map(|i| i * step)
        .take_while(|&d| d <= s.t_end - s.t0)
        .collect();
    html! {
        section aria-labelledby="tl-h" {
            h2 #tl-h { "Timeline" }
            div.legend aria-hidden="true" {
                span { i style="background:var(--ok)" {} "success" }
                span { i style="background:var(--bad)" {} "failed attempt" }
                span { i style="background:var(--run)" {} "running" }
                span { i style="background:var(--warn)" {} "cancelled / waiting" }
                @if s.fault_at.is_some() { span { i style="background:rgba(192,38,45,.25)" {} "RTO window (fault → recovery)" } }
                span { "Times in UTC; below each, the time since the run started." }
            }
            div.tl {
                @if let Some(f) = s.fault_at.filter(|f| (s.t0..=s.t_end).contains(f)) {
                    div.marks aria-hidden="true" {
                        @if let Some(r) = s.recovered_at.filter(|r| (s.t0..=s.t_end).contains(r)) {
                            div.rto style={"left:" (format!("{:.2}", pct(f, s.t0, span))) "%;width:" (format!("{:.2}", pct(r, s.t0, span) - pct(f, s.t0, span))) "%"} {}
                            @let x = pct(r, s.t0, span);
                            div class={"mk recovery" @if x > 70.0 { " r" }} style={"left:" (format!("{x:.2}")) "%"} { span { "recovered " (clock(r, true)) } }
                        }
                        @let x = pct(f, s.t0, span);
                        div class={"mk fault" @if x > 70.0 { " r" }} style={"left:" (format!("{x:.2}")) "%"} { span { "fault " (clock(f, true)) } }
                    }
                }
                @if s.gates.iter().any(|g| g.answer.is_some()) {
                    div.marks aria-hidden="true" {
                        @for g in &s.gates {
                            @if let Some(a) = g.answer.as_ref().filter(|a| (s.t0..=s.t_end).contains(&a.at)) {
                                @let x = pct(a.at, s.t0, span);
                                div class={"mk gate" @if x > 70.0 { " r" }} style={"left:" (format!("{x:.2}")) "%"}
                                    { span { (if a.approved { "approved " } else { "rejected " }) (clean(g.step)) } }
                            }
                        }
                    }
                }
                table aria-label="Timeline of the run's attempts" {
                    colgroup { col.a; col; col.c; }
                    thead { tr.ax {
                        th scope="col" { "step" }
                        th.tk scope="col" aria-label={"From " (clock(s.t0, precise)) " UTC, over " (dur(s.t_end - s.t0))} {
                            @for (i, d) in ticks.iter().enumerate() {
                                @let left = pct(s.t0 + d, s.t0, span);
                                span class=[(i > 0 && left > 92.0).then_some("end")] style={"left:" (format!("{left:.2}")) "%"} {
                                    (clock(s.t0 + d, precise)) br; (since(*d))
                                }
                            }
                        }
                        th scope="col" { "state · time" }
                    } }
                    tbody {
                        @for l in &s.lanes {
                            @let state = l.state();
                            tr class=[(!l.leg.is_empty()).then_some("leg")] {
                                th {
                                    // A lane with more to say links to it (retries, errors, plan).
                                    @if crate::run::worth_details(l) && crate::run::rich(l) {
                                        a href={"#step-" (l.id())} { (clean(&l.id())) }
                                    } @else { (clean(&l.id())) }
                                }
                                td {
                                    @for a in &l.attempts {
                                        @let left = pct(a.start, s.t0, span);
                                        @let w = pct(a.end.unwrap_or(s.t_end), s.t0, span) - left;
                                        @let style = format!("left:{left:.2}%;width:{w:.2}%");
                                        // A lane's only, successful attempt needs no words beside its state.
                                        @if l.attempts.len() == 1 && a.state == "success" {
                                            i class={"b " (a.state)} style=(style) {}
                                        } @else {
                                            i class={"b " (a.state)} style=(style)
                                                title={"attempt " (a.n) ": " (a.state) ", " (dur(a.end.unwrap_or(s.t_end) - a.start))} {}
                                        }
                                    }
                                    @if state == "waiting" {
                                        i.b.waiting style="left:calc(100% - 1.2rem);width:1.2rem" title="waiting for approval" {}
                                    }
                                }
                                td class=(state) {
                                    (state)
                                    @if let Some(f) = &l.finished { @if f.attempts > 1 { " ×" (f.attempts) } }
                                    @if let Some(t) = l.took(s.t_end) { span.at { " · " (dur(t)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
