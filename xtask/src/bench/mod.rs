//! `cargo xtask bench [railway|tick|claim|all]`: benchmarks that print tables. They are never
//! timing assertions: the machines are shared and noisy, so the figures are for reading.

pub mod claim;
mod railway;
mod tick;

pub fn main(args: &[String]) -> Result<(), String> {
    // Timings of a debug build say little: run the benchmarks from a release build.
    if cfg!(debug_assertions) {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--release", "--package", "xtask", "--", "bench"])
            .args(args)
            .status()
            .map_err(|e| format!("could not start the release build: {e}"))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("benchmark failed ({status})"))
        };
    }
    let which = args.first().map(String::as_str).unwrap_or("all");
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        match which {
            "railway" => railway::run().await,
            "tick" => tick::run().await,
            "claim" => claim::run().await,
            "all" => {
                railway::run().await?;
                tick::run().await?;
                claim::run().await
            }
            other => Err(format!("unknown benchmark {other:?} (railway, tick, claim, all)")),
        }
    })
}

/// A Markdown table, printed as it is built.
pub struct Table {
    widths: Vec<usize>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        let widths: Vec<usize> = headers.iter().map(|h| h.len().max(22)).collect();
        let t = Self { widths };
        t.row(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        println!(
            "|{}|",
            t.widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        t
    }

    pub fn row(&self, cells: &[String]) {
        let cells: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!(" {c:>w$} "))
            .collect();
        println!("|{}|", cells.join("|"));
    }
}
