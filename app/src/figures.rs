//! The session's figures over time: the last minute of frame rate and behind-live for the
//! live chart, and the summary a stopped session shows instead of frozen live figures.
//! Pure: tested natively.

use crate::protocol::Stats;
use std::collections::VecDeque;

/// Points the chart keeps: a minute of the server's figures (two a second).
pub const HISTORY_POINTS: usize = 120;

/// One point of the chart: frames out a second, and seconds behind live (if known).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub fps: f32,
    pub behind: Option<f64>,
}

/// The last minute of figures, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    points: VecDeque<Point>,
}

/// The chart's scales: frames a second from 0 to this, and seconds behind from 0 to this.
pub const FPS_SCALE: f32 = 35.0;
pub const BEHIND_SCALE: f64 = 2.0;

impl History {
    /// Adds the newest point, forgetting what is older than a minute.
    pub fn push(&mut self, point: Point) {
        self.points.push_back(point);
        while self.points.len() > HISTORY_POINTS {
            self.points.pop_front();
        }
    }

    /// Number of points kept.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there is nothing to draw yet.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// SVG polyline points for the frame rate in a `width`×`height` box, the newest at the
    /// right edge.
    pub fn fps_line(&self, width: f64, height: f64) -> String {
        self.line(width, height, |p| Some(f64::from(p.fps / FPS_SCALE)))
    }

    /// SVG polyline points for behind-live (points without the figure are left out).
    pub fn behind_line(&self, width: f64, height: f64) -> String {
        self.line(width, height, |p| p.behind.map(|b| b / BEHIND_SCALE))
    }

    fn line(&self, width: f64, height: f64, y: impl Fn(&Point) -> Option<f64>) -> String {
        let step = width / (HISTORY_POINTS - 1) as f64;
        let offset = (HISTORY_POINTS - self.points.len()) as f64 * step;
        self.points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let share = y(p)?.clamp(0.0, 1.0);
                Some(format!(
                    "{:.1},{:.1}",
                    offset + i as f64 * step,
                    height - share * height
                ))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The sentence a screen reader gets for the chart.
    pub fn describe(&self) -> String {
        let Some(last) = self.points.back() else {
            return "No figures yet.".into();
        };
        let fps: Vec<f32> = self.points.iter().map(|p| p.fps).collect();
        let low = fps.iter().copied().fold(f32::INFINITY, f32::min);
        let behind = match last.behind {
            Some(b) => format!(", {b:.2} s behind live"),
            None => String::new(),
        };
        format!(
            "Last {} s: {:.0} frames a second now{behind}; lowest {low:.0}.",
            self.points.len() / 2,
            last.fps
        )
    }
}

/// What a session amounted to, shown once it has ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// From the first frame sent to the end.
    pub seconds: f64,
    /// Frames the server processed and sent back.
    pub frames: u64,
    /// Frames it skipped.
    pub dropped: u64,
    /// The most faces in one frame.
    pub most_faces: u32,
    /// The mean of the behind-live figures seen (if any).
    pub mean_behind: Option<f64>,
}

impl Summary {
    /// The summary of a session of `seconds` whose last figures were `stats`.
    pub fn new(seconds: f64, stats: &Stats, most_faces: u32, mean_behind: Option<f64>) -> Self {
        Summary {
            seconds,
            frames: stats.frames_out,
            dropped: stats.frames_dropped,
            most_faces,
            mean_behind,
        }
    }

    /// "1 min 05 s" or "42 s".
    pub fn length(&self) -> String {
        let s = self.seconds.max(0.0).round() as u64;
        if s >= 60 {
            format!("{} min {:02} s", s / 60, s % 60)
        } else {
            format!("{s} s")
        }
    }

    /// Average frames a second over the session.
    pub fn mean_fps(&self) -> f64 {
        if self.seconds <= 0.0 {
            0.0
        } else {
            self.frames as f64 / self.seconds
        }
    }
}

/// Running aggregates of one session for its [`Summary`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub most_faces: u32,
    behind_sum: f64,
    behind_count: u32,
}

impl Tally {
    /// Takes one round of figures.
    pub fn add(&mut self, faces: u32, behind: Option<f64>) {
        self.most_faces = self.most_faces.max(faces);
        if let Some(b) = behind.filter(|b| (0.0..60.0).contains(b)) {
            self.behind_sum += b;
            self.behind_count += 1;
        }
    }

    /// The mean behind-live figure, if any was seen.
    pub fn mean_behind(&self) -> Option<f64> {
        (self.behind_count > 0).then(|| self.behind_sum / f64::from(self.behind_count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_a_minute_and_draws_the_newest_at_the_right() {
        let mut h = History::default();
        assert_eq!(h.describe(), "No figures yet.");
        for i in 0..200 {
            h.push(Point {
                fps: if i == 150 { 10.0 } else { 30.0 },
                behind: (i % 2 == 0).then_some(0.5),
            });
        }
        assert_eq!(h.len(), HISTORY_POINTS);
        let fps = h.fps_line(238.0, 70.0);
        let points: Vec<&str> = fps.split(' ').collect();
        assert_eq!(points.len(), HISTORY_POINTS);
        assert_eq!(points.last(), Some(&"238.0,10.0"));
        assert_eq!(h.behind_line(238.0, 70.0).split(' ').count(), 60);
        assert!(h.describe().contains("lowest 10"), "{}", h.describe());

        let mut short = History::default();
        short.push(Point {
            fps: 35.0,
            behind: Some(5.0),
        });
        assert_eq!(short.fps_line(238.0, 70.0), "238.0,0.0");
        assert_eq!(short.behind_line(238.0, 70.0), "238.0,0.0", "clamped");
    }

    #[test]
    fn a_summary_reads_its_length_and_rate() {
        let stats = Stats {
            frames_out: 1950,
            frames_dropped: 3,
            ..Stats::default()
        };
        let mut tally = Tally::default();
        tally.add(2, Some(0.3));
        tally.add(1, Some(0.5));
        tally.add(0, Some(-4.0));
        let s = Summary::new(65.0, &stats, tally.most_faces, tally.mean_behind());
        assert_eq!(s.length(), "1 min 05 s");
        assert!((s.mean_fps() - 30.0).abs() < 1e-9);
        assert_eq!(s.most_faces, 2);
        assert!((s.mean_behind.unwrap() - 0.4).abs() < 1e-9);
        assert_eq!(Summary::default().length(), "0 s");
        assert_eq!(Summary::default().mean_fps(), 0.0);
    }
}
