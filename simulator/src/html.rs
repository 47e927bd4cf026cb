//! The report as one self-contained HTML page with SVG charts: utilisation per host before
//! and after the faults, and detection and heal time per kill.

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
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("#2a2"), "a heal bar");
    }
}
