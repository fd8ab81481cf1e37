//! A throwaway PostgreSQL cluster for the database tests: `initdb` in a
//! temporary directory, the server on a free loopback port (and a Unix
//! socket in that directory), password authentication over TCP, stopped by
//! its PID when dropped. As root the server runs as the `postgres` user
//! (PostgreSQL refuses to run as root). `test.sh` installs PostgreSQL from
//! the system packages when it is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The superuser the cluster is made with.
pub const USER: &str = "flagpost";

/// How long a start may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server in a temporary directory.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The loopback TCP port it listens on.
    pub port: u16,
    /// The superuser's password (random per cluster).
    pub password: String,
    /// (uid, gid) of the `postgres` user when the tests run as root.
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

/// The directory holding `initdb`, `postgres` and `pgbench`: `$PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no pg_config): \
             run ./test.sh, which installs it, or set PG_BIN"
        ),
    }
}

impl PgCluster {
    /// Makes and starts a cluster; panics with the server's log if it
    /// cannot.
    pub fn start() -> PgCluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!(
            "flagpost-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let run_as = is_root().then(postgres_ids);
        let password = random_hex();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, &password).expect("password file");
        if run_as.is_some() {
            chown_to_postgres(&dir);
        }
        let data = dir.join("data");
        let out = command(&run_as, &bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cluster = PgCluster {
            dir,
            bin,
            port,
            password,
            run_as,
            child: None,
        };
        cluster.start_server();
        cluster
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `postgres://flagpost@127.0.0.1:PORT/postgres` (no password: give it
    /// with [`password_file`](Self::password_file) or `PGPASSWORD`).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL with the password in it, for the test's own clients.
    pub fn url_with_password(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// A file holding the password, owner-only (created on first call).
    pub fn password_file(&self) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("password");
        if !path.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("password file");
            std::io::Write::write_all(&mut f, self.password.as_bytes()).expect("write");
        }
        path
    }

    /// A program of the PostgreSQL installation (`pgbench`, `psql`, …).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Stops the server (fast shutdown: clients are disconnected) and
    /// waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }

    fn start_server(&mut self) {
        let mut child = command(&self.run_as, &self.bin.join("postgres"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=120",
                "-c",
                "wal_level=logical",
                "-c",
                "max_replication_slots=8",
                "-c",
                "max_wal_senders=8",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        crate::process::wait_ready_on_stderr(
            &mut child,
            "ready to accept connections",
            START_TIMEOUT,
            "postgres",
        );
        self.child = Some(child);
    }

    /// Whether the data directory exists (for the reader of a failure).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program`, run as the `postgres` user when the tests run as root (the
/// child is the program itself, so its PID is the server's).
fn command(run_as: &Option<(u32, u32)>, program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if let Some((uid, gid)) = *run_as {
        c.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    c
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("running as root needs a `postgres` user (the PostgreSQL package makes it)")
    };
    (id("-u"), id("-g"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chown_to_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .expect("chown");
    assert!(
        status.success(),
        "chown {} to postgres failed",
        dir.display()
    );
}

fn random_hex() -> String {
    let mut bytes = [0u8; 12];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        std::io::Read::read_exact(&mut f, &mut bytes)?;
        Ok(())
    });
    f.expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
