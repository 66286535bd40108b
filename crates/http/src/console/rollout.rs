//! The console's rollout line and banner: where the newest rollout stands, and why it stopped
//! when it failed (shown until another rollout starts).

use pool_provisioner::RolloutView;

/// The fact line, and the banner's text when the newest rollout failed.
pub(crate) fn line(view: Option<RolloutView>) -> (String, Option<String>) {
    let Some(v) = view else {
        return ("none yet".into(), None);
    };
    let (r, a) = (&v.rollout, &v.agents);
    let total = a.pending + a.upgrading + a.done + a.rolling_back + a.rolled_back + a.skipped;
    let line = format!(
        "#{} {} → {} ({}): {} of {total} upgraded, {} upgrading, {} waiting{}",
        r.id,
        r.runtime,
        r.target,
        r.state,
        a.done,
        a.upgrading,
        a.pending,
        if a.rolling_back + a.rolled_back > 0 {
            format!(", {} rolled back", a.rolling_back + a.rolled_back)
        } else {
            String::new()
        }
    );
    let banner = r
        .failure
        .as_ref()
        .map(|f| format!("rollout #{} of {} to {}: {f}", r.id, r.runtime, r.image));
    (line, banner)
}
