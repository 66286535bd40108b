//! A benchmark's command-line options, read one at a time: whole numbers after their flag
//! (`--agents 100_000`), flags alone, and an unknown option refused with the usage.

pub(super) struct Args<'a> {
    rest: std::slice::Iter<'a, String>,
    usage: &'static str,
}

impl<'a> Args<'a> {
    /// `usage`: the command line, as the refusal of an unknown option shows it.
    pub fn new(args: &'a [String], usage: &'static str) -> Self {
        Self {
            rest: args.iter(),
            usage,
        }
    }

    /// The next option.
    pub fn next(&mut self) -> Option<&'a str> {
        self.rest.next().map(String::as_str)
    }

    /// The whole number above 0 after the option `name` (`_` may separate its digits).
    pub fn number(&mut self, name: &str) -> Result<u64, String> {
        self.rest
            .next()
            .and_then(|v| v.replace('_', "").parse().ok())
            .filter(|n| *n > 0)
            .ok_or(format!("{name} needs a whole number above 0"))
    }

    /// The refusal of an option the benchmark does not know.
    pub fn unknown(&self, option: &str) -> String {
        format!("unknown option {option:?}\nusage: {}", self.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn numbers_flags_and_refusals() {
        let line = args("--agents 100_000 --tls --runs 0 --steady");
        let mut a = Args::new(&line, "bench x [--agents N]");
        assert_eq!(a.next(), Some("--agents"));
        assert_eq!(a.number("--agents"), Ok(100_000));
        assert_eq!(a.next(), Some("--tls"));
        assert_eq!(a.next(), Some("--runs"));
        assert_eq!(
            a.number("--runs"),
            Err("--runs needs a whole number above 0".into())
        );
        assert_eq!(a.next(), Some("--steady"));
        assert_eq!(
            a.number("--steady"),
            Err("--steady needs a whole number above 0".into())
        );
        assert_eq!(a.next(), None);
        assert_eq!(
            a.unknown("--x"),
            "unknown option \"--x\"\nusage: bench x [--agents N]"
        );
    }
}
