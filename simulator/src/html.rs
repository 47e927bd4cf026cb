//! The report as one self-contained HTML page with SVG charts: the convergence curve (slots
//! running and hosts up over time), utilisation per host before and after the faults, the
//! distribution of detection and heal times, and both per kill.

use std::fmt::Write as _;

use crate::report::{Report, Utilisation};

const WIDTH: f64 = 900.0;

/// The page.
pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>knit-sim: {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f4f4f4;padding:1em}}\
         svg{{background:#fff;border:1px solid #ccc}}</style></head><body>\
         <h1>knit-sim: {name}</h1><pre>{table}</pre>",
        name = escape(&report.scenario),
        table = escape(&report.table())
    );
    if report.membership == crate::model::MembershipKind::Model {
        out.push_str(
            "<p><strong>Detection and heal times come from a calibrated model of membership, \
             not from the real membership core.</strong></p>",
        );
    }
    out.push_str(
        "<h2>Convergence: slots running somewhere (blue, %) and hosts up (grey), over time; \
         kills in red</h2>",
    );
    out.push_str(&convergence_chart(report));
    out.push_str(
        "<h2>Distribution: share of kills detected (orange) and healed (green) within a time</h2>",
    );
    out.push_str(&distribution_chart(report));
    out.push_str("<h2>Cpu reserved per host (grey: before the faults, blue: at the end)</h2>");
    out.push_str(&utilisation_chart(
        &report.utilisation_before,
        &report.utilisation_after,
    ));
    out.push_str("<h2>Per kill: detection (orange) and heal (green), ms after the kill</h2>");
    out.push_str(&kill_chart(report));
    out.push_str("</body></html>\n");
    out
}

fn utilisation_chart(before: &Utilisation, after: &Utilisation) -> String {
    let hosts = before.per_host.len().max(after.per_host.len()).max(1);
    let height = 220.0;
    let bar = WIDTH / hosts as f64;
    let max = before
        .per_host
        .iter()
        .chain(&after.per_host)
        .map(|u| u.cpu)
        .fold(0.01, f64::max);
    let mut svg = format!("<svg width=\"{WIDTH}\" height=\"{height}\">");
    for (set, colour, shift) in [(before, "#bbb", 0.0), (after, "#36c", 0.5)] {
        for u in &set.per_host {
            let index: f64 = u.host.trim_start_matches('h').parse().unwrap_or(0.0);
            let h = u.cpu / max * (height - 20.0);
            let _ = write!(
                svg,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"{colour}\">\
                 <title>{} cpu {:.1}%</title></rect>",
                index * bar + shift * bar,
                height - h,
                (bar / 2.0).max(0.5),
                u.host,
                u.cpu * 100.0
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"14\" font-size=\"12\">max {:.1}%</text></svg>",
        max * 100.0
    );
    svg
}

fn convergence_chart(report: &Report) -> String {
    let points = &report.convergence;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "<p>No measured time in this run.</p>".to_owned();
    };
    let height = 200.0;
    let span = (last.at_s - first.at_s).max(1.0);
    let x = |t: f64| 40.0 + (t - first.at_s) / span * (WIDTH - 50.0);
    let hosts = points
        .iter()
        .map(|p| p.live_hosts)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let line = |value: &dyn Fn(&crate::report::Point) -> f64| {
        points
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    x(p.at_s),
                    10.0 + (1.0 - value(p)) * (height - 30.0)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!("<svg width=\"{WIDTH}\" height=\"{height}\">");
    for kill in &report.kill_log {
        let at = kill.at_ms as f64 / 1000.0;
        if at >= first.at_s {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"10\" y2=\"{1:.1}\" stroke=\"#d33\" \
                 stroke-width=\"0.5\"><title>{2} killed at {at} s</title></line>",
                x(at),
                height - 20.0,
                kill.host
            );
        }
    }
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#999\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/>\
         <text x=\"2\" y=\"14\" font-size=\"11\">100%</text>\
         <text x=\"2\" y=\"{:.1}\" font-size=\"11\">0</text>\
         <text x=\"40\" y=\"{:.1}\" font-size=\"11\">{} s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{} s; min {:.2}% running, {} hosts at most</text></svg>",
        line(&|p| p.live_hosts as f64 / hosts),
        line(&|p| p.slots_running),
        height - 20.0,
        height - 4.0,
        first.at_s,
        WIDTH - 330.0,
        height - 4.0,
        last.at_s,
        points.iter().map(|p| p.slots_running).fold(1.0, f64::min) * 100.0,
        hosts
    );
    svg
}

fn distribution_chart(report: &Report) -> String {
    let mut detection: Vec<u64> = report
        .kill_log
        .iter()
        .filter_map(|k| k.detection_ms)
        .collect();
    let mut heal: Vec<u64> = report.kill_log.iter().filter_map(|k| k.heal_ms).collect();
    if detection.is_empty() && heal.is_empty() {
        return "<p>No kills in this run.</p>".to_owned();
    }
    detection.sort_unstable();
    heal.sort_unstable();
    let longest = detection
        .iter()
        .chain(&heal)
        .max()
        .copied()
        .unwrap_or(1)
        .max(1) as f64;
    let kills = report.kill_log.len().max(1) as f64;
    let height = 200.0;
    let x = |ms: u64| 40.0 + ms as f64 / longest * (WIDTH - 60.0);
    let y = |share: f64| 10.0 + (1.0 - share) * (height - 30.0);
    let steps = |samples: &[u64]| {
        let mut points = format!("{:.1},{:.1}", x(0), y(0.0));
        for (i, &ms) in samples.iter().enumerate() {
            let _ = write!(
                points,
                " {0:.1},{1:.1} {0:.1},{2:.1}",
                x(ms),
                y(i as f64 / kills),
                y((i + 1) as f64 / kills)
            );
        }
        points
    };
    format!(
        "<svg width=\"{WIDTH}\" height=\"{height}\">\
         <polyline fill=\"none\" stroke=\"#e80\" stroke-width=\"1.5\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#2a2\" stroke-width=\"1.5\" points=\"{}\"/>\
         <text x=\"2\" y=\"14\" font-size=\"11\">100%</text>\
         <text x=\"2\" y=\"{:.1}\" font-size=\"11\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{longest} ms</text></svg>",
        steps(&detection),
        steps(&heal),
        height - 20.0,
        WIDTH - 80.0,
        height - 4.0
    )
}

fn kill_chart(report: &Report) -> String {
    let kills = &report.kill_log;
    if kills.is_empty() {
        return "<p>No kills in this run.</p>".to_owned();
    }
    let longest = kills
        .iter()
        .flat_map(|k| [k.detection_ms, k.heal_ms])
        .flatten()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let row = 14.0;
    let height = row * kills.len() as f64 + 20.0;
    let mut svg = format!("<svg width=\"{WIDTH}\" height=\"{height}\">");
    for (i, k) in kills.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        for (value, colour, dy) in [(k.detection_ms, "#e80", 0.0), (k.heal_ms, "#2a2", 6.0)] {
            if let Some(ms) = value {
                let _ = write!(
                    svg,
                    "<rect x=\"60\" y=\"{:.1}\" width=\"{:.1}\" height=\"5\" fill=\"{colour}\">\
                     <title>{} {ms} ms</title></rect>",
                    y + dy,
                    ms as f64 / longest * (WIDTH - 80.0),
                    k.host
                );
            }
        }
        let _ = write!(
            svg,
            "<text x=\"2\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            y + 10.0,
            k.host
        );
    }
    let _ = write!(
        svg,
        "<text x=\"60\" y=\"{:.1}\" font-size=\"11\">longest: {longest} ms</text></svg>",
        height - 4.0
    );
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scenario, run};

    #[test]
    fn the_page_has_both_charts_and_escapes_text() {
        let scenario = Scenario::from_toml(include_str!("../scenarios/kill-one.toml")).unwrap();
        let mut report = run(&scenario, None).unwrap();
        report.scenario = "a<b".into();
        let page = page(&report);
        assert!(page.contains("a&lt;b"));
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(
            page.contains("Convergence") && page.contains("#36c"),
            "the curves"
        );
        assert!(page.contains("#2a2"), "a heal bar");
    }
}
