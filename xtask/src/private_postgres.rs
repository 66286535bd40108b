//! A private, throwaway PostgreSQL cluster, for a newcomer whose machine has PostgreSQL's server
//! programs installed but no server running: the demo's database when nothing answers at
//! `DATABASE_URL`, and the test suite's (`cargo xtask test`) when `DATABASE_URL` is unset.
//!
//! [`PrivateCluster::start`] runs `initdb` into a fresh temporary directory (trust
//! authentication, superuser `postgres`, no fsync) and `pg_ctl start` on a free loopback port,
//! with its Unix socket in that directory, so it shares nothing with any other PostgreSQL on the
//! machine. Dropping the [`PrivateCluster`] stops the server (`pg_ctl stop -m fast`) and deletes
//! the directory; the caller keeps the guard alive for as long as it uses the server, and every
//! way out (an error, a panic, Ctrl-C handled by the caller) drops it.
//!
//! `initdb` and `postgres` refuse to run as root. As root, the directory is handed to `nobody`
//! and the programs are run through util-linux's `setpriv`, which only changes the user and
//! group ids before `exec`. That is what works both here and in a Debian CI container:
//! util-linux is an Essential package there, so `setpriv` is always present, and unlike
//! `su nobody -c …` (nobody's shell is `nologin`) or `runuser` (a PAM session, configured or
//! not in a minimal container) it needs neither a login shell nor PAM.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What to install when the server programs are missing, for the one-line message.
pub const INSTALL_HINT: &str = "install PostgreSQL's server programs (Debian/Ubuntu: `apt-get install postgresql`; \
     macOS: `brew install postgresql`) or set DATABASE_URL to a running server";

/// Where Debian and Ubuntu install each major version's server programs (`<version>/bin`).
const DEBIAN_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// How long `pg_ctl` may take to start or stop the server.
const PG_CTL_WAIT_SECS: &str = "30";

/// The server programs of one PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPrograms {
    /// The directory holding `initdb` and `pg_ctl`.
    pub bin_dir: PathBuf,
}

impl ServerPrograms {
    /// The newest installation: Debian's `/usr/lib/postgresql/<version>/bin`, newest version
    /// first, then the directories on `PATH`. `None` when no directory holds both programs.
    pub fn find() -> Option<Self> {
        Self::find_in(
            Path::new(DEBIAN_VERSIONS_DIR),
            std::env::var_os("PATH").as_deref(),
        )
    }

    fn find_in(versions_dir: &Path, path: Option<&std::ffi::OsStr>) -> Option<Self> {
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(versions_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let version = name
                    .to_str()?
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        // Numerically, so 10 comes after 9.6.
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        let on_path: Vec<PathBuf> = path
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        versions
            .into_iter()
            .map(|(_, dir)| dir)
            .chain(on_path)
            .find(|dir| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl")))
            .map(|bin_dir| Self { bin_dir })
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Who runs the server programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAs {
    /// This process's own user.
    Me,
    /// An unprivileged account, because this process is root.
    Unprivileged {
        /// Its user id.
        uid: u32,
        /// Its group id.
        gid: u32,
    },
}

/// A running throwaway cluster. Dropping it stops the server and deletes its directory.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    programs: ServerPrograms,
    run_as: RunAs,
    /// Whether `pg_ctl start` was run, so there may be a server to stop.
    started: bool,
}

impl PrivateCluster {
    /// Creates and starts a cluster; returns once it accepts TCP connections.
    pub fn start(programs: &ServerPrograms) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("pool-private-pg-{}-{}", std::process::id(), nanos()));
        // pg_ctl hands its -o options to a shell: keep the directory out of quoting trouble.
        if dir.to_string_lossy().contains(['\'', '"', ' ', '\\']) {
            return Err(format!(
                "temporary directory {} has characters pg_ctl cannot pass on; set TMPDIR to a plain path",
                dir.display()
            ));
        }
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // From here on the guard exists, so a failure below still removes what was made.
        let mut cluster = Self {
            dir,
            port: 0,
            programs: programs.clone(),
            run_as: RunAs::Me,
            started: false,
        };
        fs::set_permissions(&cluster.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", cluster.dir.display()))?;
        // The directory's owner is this process's effective user: no syscall or `id` needed.
        let owner = fs::metadata(&cluster.dir)
            .map_err(|e| format!("cannot read {}: {e}", cluster.dir.display()))?
            .uid();
        if owner == 0 {
            let (uid, gid) = nobody()?;
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to nobody: {e}", cluster.dir.display()))?;
            cluster.run_as = RunAs::Unprivileged { uid, gid };
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "--pgdata",
                &data,
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                // The C locale exists everywhere, containers without locales included.
                "--locale=C",
                "--no-sync",
            ],
        )?;
        // Another process can take the free port between the probe and the server's bind;
        // then the start fails and a new port is tried.
        let mut failure = String::new();
        for _ in 0..3 {
            cluster.port = free_port()?;
            let options = format!(
                // Durability is worth nothing in a cluster deleted on exit.
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off",
                cluster.port,
                cluster.dir.display()
            );
            let log = cluster.dir.join("server.log").display().to_string();
            cluster.started = true;
            match cluster.run(
                "pg_ctl",
                &[
                    "--pgdata",
                    &data,
                    "--log",
                    &log,
                    "--wait",
                    "--timeout",
                    PG_CTL_WAIT_SECS,
                    "-o",
                    &options,
                    "start",
                ],
            ) {
                Ok(()) => {
                    cluster.wait_until_it_answers(Duration::from_secs(10))?;
                    return Ok(cluster);
                }
                Err(e) => failure = format!("{e}; server log: {}", cluster.log_tail()),
            }
        }
        Err(failure)
    }

    /// The server's URL, as superuser `postgres` on its maintenance database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding its data, socket and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The installation it runs.
    pub fn programs(&self) -> &ServerPrograms {
        &self.programs
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// `pg_ctl --wait` already waited for the server to be ready; this confirms the TCP
    /// listener the demo uses, polling against a deadline.
    fn wait_until_it_answers(&self, timeout: Duration) -> Result<(), String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + timeout;
        loop {
            match TcpStream::connect_timeout(&address, Duration::from_millis(250)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "the private PostgreSQL does not answer at {address}: {e}; server log: {}",
                        self.log_tail()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs one of the server programs as the cluster's owner; its output only on failure.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.programs.bin_dir.join(program);
        let mut command = match self.run_as {
            RunAs::Me => Command::new(&path),
            RunAs::Unprivileged { uid, gid } => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(&path);
                c
            }
        };
        // Its own directory, which its user can enter (the caller's may be root's).
        command.args(args).current_dir(&self.dir);
        let output = command.output().map_err(|e| match self.run_as {
            RunAs::Unprivileged { .. } if e.kind() == std::io::ErrorKind::NotFound => format!(
                "running as root: {program} refuses root, and setpriv (util-linux) is not installed to run it as nobody"
            ),
            _ => format!("cannot run {}: {e}", path.display()),
        })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = if stderr.trim().is_empty() { stdout } else { stderr };
        Err(format!(
            "{program} failed ({}): {}",
            output.status,
            one_line(&said)
        ))
    }

    fn server_is_running(&self) -> bool {
        self.dir.join("data").join("postmaster.pid").exists()
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        one_line(&lines[lines.len().saturating_sub(5)..].join("\n"))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.started {
            let data = self.data_dir();
            let stop = |mode: &str| {
                self.run(
                    "pg_ctl",
                    &[
                        "--pgdata",
                        &data,
                        "--mode",
                        mode,
                        "--wait",
                        "--timeout",
                        PG_CTL_WAIT_SECS,
                        "stop",
                    ],
                )
            };
            // A fast stop ends the sessions the demo or the tests left open; immediate is for a
            // server that will not stop cleanly. Either way the directory goes.
            if let Err(fast) = stop("fast")
                && self.server_is_running()
                && let Err(immediate) = stop("immediate")
            {
                eprintln!("warning: the private PostgreSQL did not stop: {fast}; {immediate}");
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("warning: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// The `nobody` account's user and group ids, from `/etc/passwd`.
fn nobody() -> Result<(u32, u32), String> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or_else(|| {
            "running as root (initdb refuses root) and there is no `nobody` account to run PostgreSQL as"
                .into()
        })
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
}

fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake installation: `initdb` and `pg_ctl` as executable files in `bin`.
    fn fake_programs(bin: &Path, executable: bool) {
        fs::create_dir_all(bin).unwrap();
        for program in ["initdb", "pg_ctl"] {
            fs::write(bin.join(program), "#!/bin/sh\n").unwrap();
            let mode = if executable { 0o755 } else { 0o644 };
            fs::set_permissions(bin.join(program), fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    #[test]
    fn the_newest_debian_version_is_found_first_then_path_then_nothing() {
        let root =
            std::env::temp_dir().join(format!("pool-private-pg-find-{}-{}", std::process::id(), nanos()));
        let versions = root.join("versions");
        for version in ["9.6", "10", "15"] {
            fake_programs(&versions.join(version).join("bin"), true);
        }
        // Newer, but not runnable: skipped.
        fake_programs(&versions.join("17").join("bin"), false);
        let on_path = root.join("on-path");
        fake_programs(&on_path, true);
        let path = std::env::join_paths([root.join("empty"), on_path.clone()]).unwrap();

        let found = ServerPrograms::find_in(&versions, Some(&path)).unwrap();
        assert_eq!(found.bin_dir, versions.join("15").join("bin"));
        let found = ServerPrograms::find_in(&root.join("no-such-dir"), Some(&path)).unwrap();
        assert_eq!(found.bin_dir, on_path);
        assert_eq!(ServerPrograms::find_in(&root.join("no-such-dir"), None), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_private_cluster_answers_and_leaves_nothing_behind() {
        let Some(programs) = ServerPrograms::find() else {
            eprintln!("skipping: PostgreSQL's server programs are not installed ({INSTALL_HINT})");
            return;
        };
        let cluster = PrivateCluster::start(&programs).unwrap();
        let (dir, port, url) = (cluster.dir().to_path_buf(), cluster.port(), cluster.url());
        assert!(dir.join("data").join("PG_VERSION").is_file());

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let one: i32 = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.query_one("SELECT 1", &[]).await.unwrap().get(0)
        });
        assert_eq!(one, 1);
        drop(runtime);

        drop(cluster);
        assert!(!dir.exists(), "{} was not removed", dir.display());
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(
            TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(),
            "something still answers on port {port}"
        );
        TcpListener::bind(address).unwrap_or_else(|e| panic!("port {port} is not free: {e}"));
    }
}
