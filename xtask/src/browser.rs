//! `cargo xtask browser-test`: the operator console in a real browser — headless Chromium,
//! driven over WebDriver (chromedriver) — against the real binary, the simulator and a scratch
//! database, at a phone's width. Signs in, watches the pool fill, launches an agent and reads
//! its invite URL, kills an agent and sees it leave the list, reads the replicas sharing the
//! fleet (a second replica joins, then is killed), signs out and is refused.
//! Screenshots of each page go to `artifacts/console/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use pool_e2e::{ADMIN_KEY, ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_provisioner::outbound::OutboundClient;
use pool_store::testing::TestDatabase;
use railway_sim::SimConfig;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session.
struct Browser {
    http: OutboundClient,
    base: String,
    session: String,
    shots: PathBuf,
}

impl Browser {
    async fn call(&self, method: hyper::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let answer = self
            .http
            .send(method, &url, None, body.as_ref(), Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!("webdriver {path}: {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    async fn go(&self, url: &str) -> Result<(), String> {
        self.call(hyper::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(|_| ())
    }

    async fn find(&self, using: &str, value: &str) -> Result<String, String> {
        let v = self
            .call(
                hyper::Method::POST,
                "/element",
                Some(json!({"using": using, "value": value})),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element {value}"))
    }

    async fn css(&self, selector: &str) -> Result<String, String> {
        self.find("css selector", selector).await
    }

    async fn text(&self, element: &str) -> Result<String, String> {
        let v = self
            .call(hyper::Method::GET, &format!("/element/{element}/text"), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    async fn type_into(&self, element: &str, text: &str) -> Result<(), String> {
        self.call(
            hyper::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await
        .map(|_| ())
    }

    async fn clear(&self, element: &str) -> Result<(), String> {
        self.call(
            hyper::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Scrolls `element` to the top of the viewport, for a screenshot of it.
    async fn scroll_to(&self, element: &str) -> Result<(), String> {
        self.call(
            hyper::Method::POST,
            "/execute/sync",
            Some(json!({
                "script": "arguments[0].scrollIntoView({block: 'start'});",
                "args": [{ ELEMENT: element }],
            })),
        )
        .await
        .map(|_| ())
    }

    async fn click(&self, element: &str) -> Result<(), String> {
        self.call(
            hyper::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    async fn source(&self) -> Result<String, String> {
        Ok(self
            .call(hyper::Method::GET, "/source", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    async fn url(&self) -> Result<String, String> {
        Ok(self
            .call(hyper::Method::GET, "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    async fn accept_alert(&self) -> Result<(), String> {
        self.call(hyper::Method::POST, "/alert/accept", Some(json!({})))
            .await
            .map(|_| ())
    }

    async fn screenshot(&self, name: &str) -> Result<(), String> {
        let v = self.call(hyper::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("  screenshot {}", path.display());
        Ok(())
    }

    /// Polls until `check` holds on the page source.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.source().await?) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.screenshot("failed").await;
                let source = self.source().await.unwrap_or_default();
                let notice = source
                    .split("class=\"notice\"")
                    .nth(1)
                    .map(|s| s.chars().take(300).collect::<String>());
                return Err(format!(
                    "timed out waiting for {what} (at {}; notice: {notice:?})",
                    self.url().await.unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

pub fn main(_args: &[String]) -> Result<(), String> {
    crate::runtime()?.block_on(run())
}

async fn run() -> Result<(), String> {
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/console");
    std::fs::create_dir_all(&shots).map_err(|e| e.to_string())?;
    let binary = pool_manager_binary()?;
    let sim = railway_sim::start(SimConfig::quick())
        .await
        .map_err(|e| e.to_string())?;
    let db = TestDatabase::empty().await;
    let env = sim_environment(&sim, db.url(), free_port()?);
    let mut manager = ManagerProcess::start(&binary, &env).await?;
    manager.wait_healthy(Duration::from_secs(60)).await?;
    seed_a_day_of_history(&db).await?;

    let driver_port = free_port()?;
    let mut driver = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={driver_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("chromedriver is needed (apt-get install chromium chromium-driver): {e}"))?;
    let http = OutboundClient::new().map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{driver_port}");
    let mut session = None;
    for _ in 0..50 {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=390,1400"]
            }
        }}});
        if let Ok(answer) = http
            .send(
                hyper::Method::POST,
                &format!("{base}/session"),
                None,
                Some(&capabilities),
                Duration::from_secs(60),
            )
            .await
            && answer.status == 200
        {
            let v: Value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
            session = v["value"]["sessionId"].as_str().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let browser = Browser {
        http,
        base,
        session: session.ok_or("could not start a Chromium session")?,
        shots,
    };
    let mut result = scenario(&browser, &manager).await;
    if result.is_ok() {
        result = replicas(&browser, &manager, &binary, &sim, &db).await;
    }
    let _ = browser.call(hyper::Method::DELETE, "", None).await;
    let _ = driver.kill().await;
    manager.signal("TERM")?;
    let _ = manager.wait_exit(Duration::from_secs(30)).await;
    result
}

/// The chart draws the last 24 hours, and a pool that just started has a minute of them: the
/// hours before this run are seeded (a daily cycle of samples and some refused claims), so the
/// screenshot shows what an operator sees on a pool that has been running. The minutes of this
/// run are the pool's own.
async fn seed_a_day_of_history(db: &TestDatabase) -> Result<(), String> {
    let client = db.client().await;
    // The whole pool's history ('') and its one runtime's, the same here.
    client
        .batch_execute(
            "INSERT INTO pool_samples (shape, at, idle, claimed, warm, target, reason)
             SELECT shape, date_trunc('minute', now()) - m * interval '1 minute',
                    greatest(0, round(6 + 4 * sin(m / 229.0) - (m % 97 = 0)::int * 5))::int,
                    round(10 + 8 * sin(m / 229.0 + 1.2))::int,
                    greatest(0, round(6 + 4 * sin(m / 229.0)))::int,
                    round(6.5 + 4 * sin(m / 229.0))::int,
                    'seeded history'
               FROM generate_series(5, 24 * 60 - 1) AS m, (VALUES (''), ('openclaw')) AS shapes(shape)
             ON CONFLICT (shape, at) DO NOTHING;
             INSERT INTO claim_refusals (at)
             SELECT now() - h * interval '1 hour' - (r * 7) * interval '1 minute'
               FROM generate_series(3, 23, 5) AS h, generate_series(1, 3) AS r;",
        )
        .await
        .map_err(|e| format!("seeding the chart's history: {e}"))
}

async fn scenario(b: &Browser, manager: &ManagerProcess) -> Result<(), String> {
    let site = &manager.base_url;
    println!("==> sign in");
    b.go(&format!("{site}/")).await?;
    if !b.url().await?.ends_with("/login") {
        return Err("an anonymous visit was not sent to the sign-in page".into());
    }
    b.screenshot("1-sign-in").await?;
    let key = b.css("#key").await?;
    b.type_into(&key, ADMIN_KEY).await?;
    b.click(&b.css("form[action='/login'] button").await?).await?;
    b.wait_for("the fleet view", Duration::from_secs(10), |s| {
        s.contains("<h1>Fleet</h1>")
    })
    .await?;

    println!("==> the pool fills (live updates)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let idle = b.text(&b.css("[data-count='idle']").await?).await?;
        if idle.trim() == "2" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the page never showed 2 idle agents (shows {idle})"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The stock by runtime: the whole pool's row (live-updated like the counts) and its cost.
    let warm = b.text(&b.css("[data-stock=':warm']").await?).await?;
    let cost = b.text(&b.css("[data-stock=':cost']").await?).await?;
    if warm.trim() != "2" || !cost.starts_with('$') {
        return Err(format!(
            "the stock table shows {warm:?} warm at {cost:?} (want 2 warm and a cost in dollars)"
        ));
    }
    b.screenshot("2-fleet-filled").await?;

    println!("==> raise minIdle through the settings form; the running pool grows");
    let min_idle = b.css("#minIdle").await?;
    b.clear(&min_idle).await?;
    b.type_into(&min_idle, "3").await?;
    b.click(&b.css("form.settings-form button").await?).await?;
    b.wait_for("the settings to be saved", Duration::from_secs(10), |s| {
        s.contains("Settings of openclaw saved")
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let idle = b.text(&b.css("[data-count='idle']").await?).await?;
        if idle.trim() == "3" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "minIdle 3 did not grow the pool to 3 idle (shows {idle})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.go(&format!("{site}/")).await?;
    if !b.source().await?.contains("floor 3") {
        return Err("the sizing reason does not show the new floor".into());
    }
    b.scroll_to(&b.css("section.settings").await?).await?;
    b.screenshot("3-settings-changed").await?;
    b.scroll_to(&b.css("section.chart-card").await?).await?;
    b.screenshot("4-chart").await?;

    println!("==> narrow the chart to one runtime");
    b.click(&b.css("#chart-runtime option[value='openclaw']").await?)
        .await?;
    b.wait_for("the openclaw chart", Duration::from_secs(10), |s| {
        s.contains("Last 24 hours: openclaw")
    })
    .await?;
    if !b.url().await?.contains("runtime=openclaw") {
        return Err("choosing a runtime did not show its chart".into());
    }
    b.scroll_to(&b.css("section.chart-card").await?).await?;
    b.screenshot("4b-chart-openclaw").await?;

    println!("==> launch an agent");
    b.type_into(&b.css("#agentName").await?, "Browser agent").await?;
    b.type_into(&b.css("#instructions").await?, "Say hello").await?;
    b.click(&b.css("form.launch button").await?).await?;
    b.wait_for("the launched page", Duration::from_secs(30), |s| {
        s.contains("invite-url")
    })
    .await?;
    let invite = b.text(&b.css("#invite-url").await?).await?;
    if !invite.starts_with("https://") {
        return Err(format!("no invite URL on the page: {invite:?}"));
    }
    if !b.source().await?.contains("<svg") {
        return Err("no QR code on the launched page".into());
    }
    println!("  invite URL on the page: {invite}");
    b.screenshot("5-launched").await?;

    println!("==> kill an agent and see it leave the list");
    b.go(&format!("{site}/?status=idle")).await?;
    let row = b.css("#agents tbody tr").await?;
    let victim = b
        .text(&b.find("css selector", "#agents tbody tr td a").await?)
        .await?;
    let _ = row;
    b.go(&format!("{site}/agents/{victim}")).await?;
    b.screenshot("6-agent").await?;
    b.go(&format!("{site}/?status=idle")).await?;
    b.click(
        &b.find(
            "xpath",
            &format!("//tr[@data-id='{victim}']//button[text()='Kill']"),
        )
        .await?,
    )
    .await?;
    b.accept_alert().await?;
    b.go(&format!("{site}/")).await?;
    let victim_row = format!("data-id=\"{victim}\"");
    b.wait_for(
        "the killed agent to leave the list",
        Duration::from_secs(30),
        |s| !s.contains(&victim_row),
    )
    .await?;
    b.screenshot("7-after-kill").await?;

    Ok(())
}

/// The fleet view's `#replicas` (what `crates/http/tests/replicas.rs` checks over HTTP), as the
/// browser shows it after a reload: the lines that hold `want`, or an error after `timeout`.
async fn replica_lines(
    b: &Browser,
    site: &str,
    what: &str,
    want: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        b.go(&format!("{site}/")).await?;
        let lines: Vec<String> = b
            .text(&b.css("#replicas").await?)
            .await?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if want(&lines) {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            let _ = b.screenshot("failed").await;
            return Err(format!("the replicas section never showed {what}: {lines:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// The replicas sharing the fleet: this one alone holds the 256 shards and leads; a second
/// joins and is listed beside it; killed (its lock connection gone), it is listed as gone.
/// Then signs out.
async fn replicas(
    b: &Browser,
    manager: &ManagerProcess,
    binary: &std::path::Path,
    sim: &railway_sim::SimHandle,
    db: &TestDatabase,
) -> Result<(), String> {
    let site = &manager.base_url;
    println!("==> the replicas: this one holds every shard and leads");
    let alone = |l: &[String]| {
        l.len() == 1
            && l[0].contains("· 256 of 256 shards ·")
            && l[0].contains("· leader")
            && l[0].contains("· this replica")
    };
    replica_lines(b, site, "this replica alone, with 256 shards, leading", alone).await?;
    b.scroll_to(&b.css("#replicas").await?).await?;
    b.screenshot("8-replicas").await?;

    println!("==> a second replica joins");
    let second_env = sim_environment(sim, db.url(), free_port()?);
    let mut second = ManagerProcess::start(&binary.to_path_buf(), &second_env).await?;
    let joined = async {
        second.wait_healthy(Duration::from_secs(60)).await?;
        let two = |l: &[String]| {
            l.len() == 2
                && l.iter().filter(|l| l.contains("· this replica")).count() == 1
                && l.iter().filter(|l| l.contains("· leader")).count() == 1
                && !l.iter().any(|l| l.contains("· gone"))
        };
        replica_lines(b, site, "two live replicas, one leading", two).await?;
        b.scroll_to(&b.css("#replicas").await?).await?;
        b.screenshot("9-two-replicas").await
    }
    .await;

    println!("==> the second replica is killed: listed as gone");
    let _ = second.signal("KILL");
    let _ = second.wait_exit(Duration::from_secs(30)).await;
    joined?;
    let gone = |l: &[String]| {
        l.iter()
            .any(|l| l.contains("· gone") && !l.contains("· this replica"))
            && l.iter()
                .any(|l| l.contains("· this replica") && !l.contains("· gone"))
    };
    replica_lines(b, site, "the killed replica as gone", gone).await?;

    println!("==> sign out and be refused");
    b.click(&b.css("header form button").await?).await?;
    b.go(&format!("{site}/")).await?;
    if !b.url().await?.ends_with("/login") {
        return Err("a signed-out browser still saw the fleet".into());
    }
    b.screenshot("10-signed-out").await?;
    let source = b.source().await?;
    if source.contains(ADMIN_KEY) {
        return Err("the admin key appears in a page".into());
    }
    println!("browser test passed");
    Ok(())
}
