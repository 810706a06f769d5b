//! Line charts as inline SVG, drawn on the server from the catalog's samples: no script, no
//! library, nothing fetched. Pure: points in, markup out.

use std::fmt::Write;

/// Drawing area in SVG units.
const W: f64 = 560.0;
const H: f64 = 160.0;
/// Room for the labels.
const LEFT: f64 = 72.0;
const BOTTOM: f64 = 22.0;

/// Escapes text for SVG (XML).
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG line chart of `points` (unix time, value), titled `title`, with values labelled by
/// `label` and times by `time`. With fewer than two points it says that it has too few.
pub fn line(title: &str, points: &[(u64, u64)], label: impl Fn(u64) -> String, time: impl Fn(u64) -> String) -> String {
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        W + LEFT,
        H + BOTTOM,
        xml(title)
    );
    if points.len() < 2 {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"empty\">not enough samples yet (one is taken every few checker passes)</text></svg>",
            LEFT,
            H / 2.0
        );
        return svg;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0.max(points[0].0 + 1));
    let top = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let x = |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * W;
    let y = |v: u64| H - v as f64 / top as f64 * (H - 8.0);
    let coords: Vec<String> = points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{H}\" x2=\"{}\" y2=\"{H}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"0\" x2=\"{LEFT}\" y2=\"{H}\"/>\
         <text x=\"{}\" y=\"12\" class=\"tick\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{H}\" class=\"tick\" text-anchor=\"end\">{}</text>\
         <text x=\"{LEFT}\" y=\"{}\" class=\"tick\">{}</text>\
         <text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">{}</text>\
         <polyline class=\"series\" points=\"{}\"/></svg>",
        LEFT + W,
        LEFT - 6.0,
        xml(&label(top)),
        LEFT - 6.0,
        xml(&label(0)),
        H + 16.0,
        xml(&time(t0)),
        LEFT + W,
        H + 16.0,
        xml(&time(t1)),
        coords.join(" ")
    );
    svg
}

/// The increase of a counter between consecutive samples, at the later one's time (a
/// counter that went down, such as after a host left, counts as no increase).
pub fn deltas(points: &[(u64, u64)]) -> Vec<(u64, u64)> {
    points.windows(2).map(|w| (w[1].0, w[1].1.saturating_sub(w[0].1))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_its_line_labels_and_escapes_text() {
        let svg = line("stored <bytes>", &[(100, 0), (200, 50), (300, 100)], |v| format!("{v} B"), |t| format!("t{t}"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("aria-label=\"stored &lt;bytes&gt;\""), "{svg}");
        assert!(svg.contains(">100 B<") && svg.contains(">0 B<"), "{svg}");
        assert!(svg.contains(">t100<") && svg.contains(">t300<"), "{svg}");
        // First point at the left edge and bottom, last at the right edge and top.
        assert!(svg.contains("points=\"72.0,160.0 352.0,84.0 632.0,8.0\""), "{svg}");
    }

    #[test]
    fn too_few_points_say_so() {
        assert!(line("x", &[(1, 1)], |v| v.to_string(), |t| t.to_string()).contains("not enough samples"));
        assert!(line("x", &[], |v| v.to_string(), |t| t.to_string()).contains("not enough samples"));
    }

    #[test]
    fn counter_deltas_never_go_negative() {
        assert_eq!(deltas(&[(1, 10), (2, 15), (3, 12), (4, 20)]), vec![(2, 5), (3, 0), (4, 8)]);
    }
}
