//! Results: one [`Row`] per (scenario, target, run), printed as a JSON line
//! (`RESULT {…}`) and a human table as it is measured; at the end the
//! medians per (scenario, target) and their ratios to the other targets as
//! markdown tables (what BENCHMARKS.md quotes), and all rows as JSON in
//! `<target dir>/bench-results/`.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub target: String,
    pub run: u32,
    pub ok: bool,
    pub errors: Vec<String>,
    /// Metric name → value; names end in their unit.
    pub metrics: BTreeMap<String, f64>,
}

impl Row {
    pub fn new(scenario: &str, target: &str, run: u32) -> Self {
        Self {
            scenario: scenario.into(),
            target: target.into(),
            run,
            ok: true,
            errors: Vec::new(),
            metrics: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, k: &str, v: f64) {
        self.metrics.insert(k.into(), v);
    }

    pub fn fail(&mut self, e: impl Into<String>) {
        self.ok = false;
        self.errors.push(e.into());
    }

    pub fn print(&self) {
        match serde_json::to_string(self) {
            Ok(j) => println!("RESULT {j}"),
            Err(e) => println!("RESULT (unserializable: {e})"),
        }
        println!(
            "  {:<13} {:<10} run {}  {}",
            self.scenario,
            self.target,
            self.run,
            if self.ok { "ok" } else { "FAILED" }
        );
        for (k, v) in &self.metrics {
            println!("    {k:<32} {}", fmt(*v));
        }
        for e in self.errors.iter().take(5) {
            println!("    error: {e}");
        }
        if self.errors.len() > 5 {
            println!("    … {} more errors", self.errors.len() - 5);
        }
    }
}

pub fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The q-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].into()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Markdown tables: per scenario, metrics as rows, targets as columns
/// (medians over runs), then streamgate's ratio to each other target.
pub fn summary_markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    for sc in scenarios {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.scenario == sc).collect();
        let mut targets: Vec<&str> = Vec::new();
        let mut metrics: Vec<&str> = Vec::new();
        for r in &rs {
            if !targets.contains(&r.target.as_str()) {
                targets.push(&r.target);
            }
            for k in r.metrics.keys() {
                if !metrics.contains(&k.as_str()) {
                    metrics.push(k);
                }
            }
        }
        let runs = |t: &str| rs.iter().filter(|r| r.target == t).count();
        let failed = |t: &str| rs.iter().filter(|r| r.target == t && !r.ok).count();
        out.push_str(&format!("\n#### `{sc}`\n\n| metric |"));
        for t in &targets {
            out.push_str(&format!(" {t} |"));
        }
        let others: Vec<&str> = targets
            .iter()
            .copied()
            .filter(|t| *t != "streamgate")
            .collect();
        let has_sg = targets.contains(&"streamgate");
        if has_sg {
            for o in &others {
                out.push_str(&format!(" sg/{o} |"));
            }
        }
        out.push_str("\n|---|");
        for _ in 0..targets.len() + if has_sg { others.len() } else { 0 } {
            out.push_str("---:|");
        }
        out.push('\n');
        out.push_str("| runs (failed) |");
        for t in &targets {
            out.push_str(&format!(" {} ({}) |", runs(t), failed(t)));
        }
        if has_sg {
            for _ in &others {
                out.push_str(" |");
            }
        }
        out.push('\n');
        for m in metrics {
            let med = |t: &str| {
                median(
                    rs.iter()
                        .filter(|r| r.target == t)
                        .filter_map(|r| r.metrics.get(m).copied())
                        .collect(),
                )
            };
            out.push_str(&format!("| {m} |"));
            for t in &targets {
                let v = med(t);
                out.push_str(&format!(
                    " {} |",
                    if v.is_finite() { fmt(v) } else { "–".into() }
                ));
            }
            if has_sg {
                let sg = med("streamgate");
                for o in &others {
                    let v = sg / med(o);
                    out.push_str(&format!(
                        " {} |",
                        if v.is_finite() {
                            format!("{v:.2}")
                        } else {
                            "–".into()
                        }
                    ));
                }
            }
            out.push('\n');
        }
    }
    out
}
