//! What a run saw: each assumption with what Railway did, and the problems outside them, as
//! the Markdown table the task prints.

/// One assumption and what was seen.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Sort key, so the table reads (a), (b), (c), (d) whatever order things were seen in.
    order: u8,
    /// What the pool assumes.
    pub assumption: String,
    /// What Railway did.
    pub observed: String,
    /// Whether the assumption held.
    pub held: bool,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// What was seen.
    pub observations: Vec<Observation>,
    /// What went wrong outside the assumptions (a step that failed, a project left behind).
    pub problems: Vec<String>,
}

impl Report {
    pub(super) fn observe(&mut self, order: u8, assumption: &str, observed: impl Into<String>, held: bool) {
        self.observations.push(Observation {
            order,
            assumption: assumption.to_string(),
            observed: observed.into(),
            held,
        });
    }

    /// True when every assumption held and nothing went wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.observations.iter().all(|o| o.held)
    }

    /// The observations as a Markdown table, then the problems.
    pub fn markdown(&self) -> String {
        let mut rows = self.observations.clone();
        rows.sort_by_key(|o| o.order);
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("| assumption | observed | held |\n|---|---|---|\n");
        for o in &rows {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&o.assumption),
                cell(&o.observed),
                if o.held { "yes" } else { "NO" }
            ));
        }
        for problem in &self.problems {
            out.push_str(&format!("\nproblem: {problem}\n"));
        }
        out
    }
}
