//! IPAM delegation: run the IPAM plugin named in `ipam.type` from CNI_PATH with the same
//! environment and the whole network config on stdin, as the spec says, and apply its
//! addresses and routes to the bond.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cni::args::{Args, Command};
use crate::cni::result::CniResult;
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::net::{Net, Ns, Route};

/// Runs the IPAM plugin for one verb; `Ok(None)` when the plugin printed nothing (DEL).
pub trait Ipam {
    fn exec(&self, command: Command, conf: &NetConf, args: &Args) -> Result<Option<Value>>;

    /// [`Ipam::exec`] with `beside` run on this thread while the plugin runs: CHECK reads
    /// the bond back while the IPAM plugin checks its own state, so the call costs the
    /// longer of the two, not their sum. Fakes run them one after the other.
    fn exec_beside<T>(
        &self,
        command: Command,
        conf: &NetConf,
        args: &Args,
        beside: impl FnOnce() -> T,
    ) -> (Result<Option<Value>>, T) {
        let t = beside();
        (self.exec(command, conf, args), t)
    }
}

/// The real delegate: a child process.
#[derive(Debug, Default)]
pub struct Delegate {
    /// Time spent in the IPAM plugin, for the timing breakdown.
    pub elapsed: Cell<Duration>,
}

pub fn find_plugin(plugin: &str, path: &[String]) -> Result<PathBuf> {
    path.iter()
        .map(|dir| Path::new(dir).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::IpamMissing {
            plugin: plugin.to_string(),
            path: path.join(":"),
        })
}

/// How long an IPAM plugin may take for one call when the config sets no `ipamTimeout`:
/// host-local and static answer within milliseconds; a plugin that needs more (DHCP) gets
/// it from the config. Past it the plugin is killed, so a hung one cannot hold the host-link
/// locks for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The range `ipamTimeout` accepts, in seconds.
pub const TIMEOUT_RANGE_S: std::ops::RangeInclusive<u32> = 1..=600;

/// `ipamTimeout` (whole seconds) as a deadline; `None` is the default.
pub fn timeout_from_config(seconds: Option<u32>) -> Result<Duration> {
    match seconds {
        None => Ok(DEFAULT_TIMEOUT),
        Some(s) if TIMEOUT_RANGE_S.contains(&s) => Ok(Duration::from_secs(u64::from(s))),
        Some(s) => Err(Error::config(
            "ipamTimeout",
            format!(
                "{s} is out of range; use {} to {} seconds, or omit it for {} s",
                TIMEOUT_RANGE_S.start(),
                TIMEOUT_RANGE_S.end(),
                DEFAULT_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// What one run of a delegate plugin gave.
struct Finished {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Io(std::io::Error),
    /// Still running (or still holding its output open) at the deadline; killed.
    Timeout,
}

/// What a running delegate sends back from the threads that feed and drain it.
enum Event {
    Stdout(std::io::Result<Vec<u8>>),
    Stderr(std::io::Result<Vec<u8>>),
    Exited(std::io::Result<std::process::ExitStatus>),
    StdinWritten(std::io::Result<()>),
}

/// A delegate started by [`spawn_with_deadline`]: [`Running::finish`] collects it.
struct Running {
    rx: std::sync::mpsc::Receiver<Event>,
    pending: usize,
    pgid: nix::unistd::Pid,
    until: Instant,
}

/// Run `cmd` with `stdin`, and collect its exit status and output within `deadline`. The
/// plugin runs in a process group of its own; past the deadline the whole group is killed
/// (a shell script's children too, which would otherwise keep its stdout open).
fn run_with_deadline(
    cmd: Process,
    stdin: &[u8],
    deadline: Duration,
) -> std::result::Result<Finished, RunError> {
    spawn_with_deadline(cmd, stdin, deadline)?.finish()
}

/// Start `cmd` (see [`run_with_deadline`]); the deadline counts from here.
fn spawn_with_deadline(
    mut cmd: Process,
    stdin: &[u8],
    deadline: Duration,
) -> std::result::Result<Running, RunError> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;

    let until = Instant::now() + deadline;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(RunError::Io)?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (tx, rx) = mpsc::channel();
    let mut pending = 0;
    if let Some(mut pipe) = child.stdin.take() {
        let (tx, input) = (tx.clone(), stdin.to_vec());
        pending += 1;
        std::thread::spawn(move || {
            // A plugin that exits without reading all of stdin closes the pipe: its exit
            // status tells what happened, not the broken pipe.
            let r = match pipe.write_all(&input) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            };
            let _ = tx.send(Event::StdinWritten(r));
        });
    }
    if let Some(mut pipe) = child.stdout.take() {
        let tx = tx.clone();
        pending += 1;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = pipe.read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(Event::Stdout(r));
        });
    }
    if let Some(mut pipe) = child.stderr.take() {
        let tx = tx.clone();
        pending += 1;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = pipe.read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(Event::Stderr(r));
        });
    }
    {
        let tx = tx.clone();
        pending += 1;
        std::thread::spawn(move || {
            let _ = tx.send(Event::Exited(child.wait()));
        });
    }
    drop(tx);
    Ok(Running {
        rx,
        pending,
        pgid,
        until,
    })
}

impl Running {
    /// Wait for the delegate's exit and output, killing its group at the deadline.
    fn finish(self) -> std::result::Result<Finished, RunError> {
        use std::sync::mpsc;
        let Running {
            rx,
            mut pending,
            pgid,
            until,
        } = self;
        let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
        let mut first_error = None;
        let mut timed_out = false;
        while pending > 0 {
            let now = Instant::now();
            let event = if timed_out {
                // Killed: its pipes close and it is reaped at once, unless something outside
                // its process group holds them; do not wait for that for long.
                rx.recv_timeout(KILL_GRACE)
            } else {
                rx.recv_timeout(until.saturating_duration_since(now))
            };
            match event {
                Ok(e) => {
                    pending -= 1;
                    match e {
                        Event::Stdout(r) => r.map(|b| stdout = b),
                        Event::Stderr(r) => r.map(|b| stderr = b),
                        Event::Exited(r) => r.map(|s| status = Some(s)),
                        Event::StdinWritten(r) => r,
                    }
                    .unwrap_or_else(|e| {
                        first_error.get_or_insert(e);
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !timed_out => {
                    timed_out = true;
                    // The group may be gone already (its leader exited and nothing else was
                    // left): ESRCH is fine.
                    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                }
                Err(_) => break,
            }
        }
        if timed_out {
            return Err(RunError::Timeout);
        }
        if let Some(e) = first_error {
            return Err(RunError::Io(e));
        }
        let status = status.ok_or_else(|| {
            RunError::Io(std::io::Error::other("the plugin's exit status was lost"))
        })?;
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }
}

/// How long to wait, after killing a plugin past its deadline, for its pipes to close.
const KILL_GRACE: Duration = Duration::from_secs(2);

impl Ipam for Delegate {
    fn exec(&self, command: Command, conf: &NetConf, args: &Args) -> Result<Option<Value>> {
        self.exec_beside(command, conf, args, || ()).0
    }

    fn exec_beside<T>(
        &self,
        command: Command,
        conf: &NetConf,
        args: &Args,
        beside: impl FnOnce() -> T,
    ) -> (Result<Option<Value>>, T) {
        let plugin = conf.ipam_type().unwrap_or_default().to_string();
        let bin = match find_plugin(&plugin, &args.path) {
            Ok(bin) => bin,
            Err(e) => return (Err(e), beside()),
        };
        let start = Instant::now();
        let mut cmd = Process::new(&bin);
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &args.container_id)
            .env("CNI_NETNS", &args.netns)
            .env("CNI_IFNAME", &args.ifname)
            .env("CNI_ARGS", &args.args)
            .env("CNI_PATH", args.path.join(":"));
        let running = spawn_with_deadline(cmd, &conf.raw, conf.ipam_timeout);
        let t = beside();
        let ran = running.and_then(Running::finish);
        (self.outcome(plugin, command, conf, start, ran), t)
    }
}

impl Delegate {
    /// The delegate's answer, or the error that says what went wrong with it.
    fn outcome(
        &self,
        plugin: String,
        command: Command,
        conf: &NetConf,
        start: Instant,
        ran: std::result::Result<Finished, RunError>,
    ) -> Result<Option<Value>> {
        self.elapsed.set(self.elapsed.get() + start.elapsed());
        crate::trace::record(
            format!("ipam {plugin} {}", command.as_str()),
            start.elapsed(),
        );
        let out = match ran {
            Ok(out) => out,
            Err(RunError::Io(source)) => {
                return Err(Error::IpamExec {
                    plugin: plugin.clone(),
                    source,
                })
            }
            Err(RunError::Timeout) => {
                tracing::warn!(plugin = %plugin, command = command.as_str(), timeout_s = conf.ipam_timeout.as_secs(), "ipam delegate killed at its deadline");
                return Err(Error::IpamTimeout {
                    plugin,
                    command: command.as_str(),
                    timeout: conf.ipam_timeout,
                });
            }
        };
        tracing::debug!(plugin = %plugin, command = command.as_str(), status = ?out.status, "ipam delegate ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let parsed: Option<Value> = serde_json::from_str(stdout.trim()).ok();
            let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).cloned();
            let code = field("code").and_then(|c| c.as_u64()).unwrap_or(0);
            let msg = field("msg")
                .and_then(|m| m.as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    format!(
                        "exited with {}: {}{}",
                        out.status,
                        stdout.trim(),
                        stderr.trim()
                    )
                });
            let details = field("details")
                .and_then(|d| d.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(Error::Ipam {
                plugin,
                code: u32::try_from(code).unwrap_or(0),
                msg,
                details,
            });
        }
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(stdout.trim())
            .map(Some)
            .map_err(|source| Error::Decode {
                what: format!("the output of IPAM plugin {plugin}"),
                source,
            })
    }
}

/// Put the IPAM result's addresses and routes on the bond. A route without its own gateway
/// takes the gateway of the first address of its family, as the reference plugins do.
pub fn configure<N: Net>(net: &mut N, bond_index: u32, result: &CniResult) -> Result<()> {
    for ip in &result.ips {
        net.add_address(Ns::Pod, bond_index, ip.address)
            .map_err(|e| Error::netlink(format!("add address {} to the bond", ip.address), e))?;
    }
    for r in &result.routes {
        let family_v4 = r.dst.addr().is_ipv4();
        let gw = r.gw.or_else(|| {
            result
                .ips
                .iter()
                .filter(|ip| ip.address.addr().is_ipv4() == family_v4)
                .find_map(|ip| ip.gateway)
        });
        let route = Route {
            dst: r.dst.trunc(),
            gw,
            oif: Some(bond_index),
            priority: r.priority,
            table: r.table,
        };
        net.add_route(Ns::Pod, &route)
            .map_err(|e| Error::netlink(format!("add route to {} on the bond", r.dst), e))?;
    }
    Ok(())
}

/// The IPAM plugin's supported spec versions (its VERSION answer), within `timeout`.
pub fn supported_versions(plugin_bin: &Path, timeout: Duration) -> Result<Vec<String>> {
    let plugin = plugin_bin.display().to_string();
    let mut cmd = Process::new(plugin_bin);
    cmd.env("CNI_COMMAND", "VERSION");
    let out = match run_with_deadline(cmd, b"", timeout) {
        Ok(out) => out,
        Err(RunError::Io(source)) => return Err(Error::IpamExec { plugin, source }),
        Err(RunError::Timeout) => {
            return Err(Error::IpamTimeout {
                plugin,
                command: "VERSION",
                timeout,
            })
        }
    };
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|source| Error::Decode {
        what: format!("the VERSION answer of {}", plugin_bin.display()),
        source,
    })?;
    Ok(v.get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Delegate `command` (STATUS or GC) to the IPAM plugin when it speaks spec 1.1.0; an older
/// plugin has nothing to report or collect, which is not an error.
pub fn delegate_if_supported<I: Ipam>(
    conf: &NetConf,
    args: &Args,
    ipam: &I,
    command: Command,
) -> Result<()> {
    let Some(plugin) = conf.ipam_type() else {
        return Ok(());
    };
    let bin = find_plugin(plugin, &args.path)?;
    let versions = supported_versions(&bin, conf.ipam_timeout)?;
    if !versions.iter().any(|v| v == "1.1.0") {
        tracing::info!(
            plugin,
            ?versions,
            "IPAM plugin predates spec 1.1.0; not delegating"
        );
        return Ok(());
    }
    ipam.exec(command, conf, args).map(|_| ())
}

/// Test helpers shared with the verbs' tests: IPAM plugins as shell scripts.
#[cfg(test)]
pub mod test_plugins {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// Write an executable script `dir/name` running `body` under /bin/sh.
    pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// An IPAM plugin that logs each command to `dir/calls` and hangs on the commands in
    /// `hang_on`: its child sleeps (so killing the script alone would leave its stdout
    /// open), and the child's pid goes to `dir/sleeper.pid`. Other commands answer at once.
    pub fn hanging(dir: &Path, hang_on: &str) -> PathBuf {
        let d = dir.display();
        script(
            dir,
            "hang",
            &format!(
                r#"echo "$CNI_COMMAND" >>"{d}/calls"
case " {hang_on} " in *" $CNI_COMMAND "*) ;; *) exit 0 ;; esac
sleep 600 &
echo $! >"{d}/sleeper.pid"
wait"#
            ),
        )
    }

    /// Whether the process `pid` has exited (gone or a zombie), waiting up to 5 s for it.
    pub fn has_exited(pid: &str) -> bool {
        for _ in 0..500 {
            match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    return true
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::test_plugins::{hanging, has_exited, script};
    use super::*;

    fn conf_with(ipam_type: &str, timeout: Duration) -> NetConf {
        let text = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"bond","links":[{{"name":"a"}},{{"name":"b"}}],"ipam":{{"type":"{ipam_type}"}}}}"#
        );
        let mut conf = crate::config::parse(text.as_bytes()).expect("config");
        conf.ipam_timeout = timeout;
        conf
    }

    fn args_in(dir: &Path) -> Args {
        Args {
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/var/run/netns/x".into(),
            ifname: "bond0".into(),
            args: String::new(),
            path: vec![dir.display().to_string()],
        }
    }

    #[test]
    fn the_timeout_defaults_to_30_s_and_is_bounded() {
        assert_eq!(
            conf_with("x", DEFAULT_TIMEOUT).ipam_timeout,
            DEFAULT_TIMEOUT
        );
        let parse = |extra: &str| {
            crate::config::parse(
                format!(r#"{{"cniVersion":"1.0.0","name":"n","links":[{{"name":"a"}},{{"name":"b"}}]{extra}}}"#)
                    .as_bytes(),
            )
        };
        assert_eq!(
            parse("").expect("default").ipam_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            parse(r#","ipamTimeout":"90""#)
                .expect("string")
                .ipam_timeout,
            Duration::from_secs(90)
        );
        for bad in ["0", "601", "\"soon\"", "true"] {
            let e = parse(&format!(r#","ipamTimeout":{bad}"#)).expect_err(bad);
            assert!(
                e.to_string().starts_with("invalid config: ipamTimeout: "),
                "{e}"
            );
        }
    }

    #[test]
    fn a_hung_plugin_and_its_children_are_killed_at_the_deadline_with_code_11() {
        let dir = tempfile::tempdir().expect("tempdir");
        hanging(dir.path(), "ADD");
        let conf = conf_with("hang", Duration::from_millis(300));
        let delegate = Delegate::default();
        let e = delegate
            .exec(Command::Add, &conf, &args_in(dir.path()))
            .expect_err("hangs");
        assert_eq!(e.code(), crate::cni::error::Code::TryAgainLater);
        assert_eq!(
            e.to_string(),
            "IPAM plugin hang did not answer ADD within 0.3 s and was stopped; try again later, or raise ipamTimeout if it is only slow"
        );
        let pid = std::fs::read_to_string(dir.path().join("sleeper.pid")).expect("pid");
        assert!(has_exited(&pid), "the plugin's child {pid} still runs");
        assert!(delegate.elapsed.get() >= Duration::from_millis(300));
    }

    #[test]
    fn a_plugin_that_exits_but_leaves_a_child_holding_stdout_is_stopped_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        script(
            dir.path(),
            "daemonish",
            &format!(
                r#"sleep 600 & echo $! >"{d}/sleeper.pid"; echo '{{"cniVersion":"1.0.0"}}'; exit 0"#
            ),
        );
        let conf = conf_with("daemonish", Duration::from_millis(300));
        let e = Delegate::default()
            .exec(Command::Add, &conf, &args_in(dir.path()))
            .expect_err("stdout held open");
        assert!(matches!(e, Error::IpamTimeout { .. }), "{e:?}");
        let pid = std::fs::read_to_string(dir.path().join("sleeper.pid")).expect("pid");
        assert!(has_exited(&pid), "the plugin's child {pid} still runs");
    }

    #[test]
    fn a_plugin_that_answers_in_time_is_read_whole_even_when_it_ignores_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Never reads stdin; the config is larger than a pipe holds.
        script(
            dir.path(),
            "quick",
            r#"echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/24"}]}'"#,
        );
        let mut conf = conf_with("quick", Duration::from_secs(10));
        conf.raw = vec![b' '; 1 << 20];
        let out = Delegate::default()
            .exec(Command::Add, &conf, &args_in(dir.path()))
            .expect("answers")
            .expect("a result");
        assert_eq!(out["ips"][0]["address"], "10.1.2.3/24");
        // Its own error keeps its own code and message.
        script(
            dir.path(),
            "fails",
            r#"cat >/dev/null; echo '{"code":11,"msg":"store busy"}'; exit 1"#,
        );
        let e = Delegate::default()
            .exec(
                Command::Add,
                &conf_with("fails", Duration::from_secs(10)),
                &args_in(dir.path()),
            )
            .expect_err("fails");
        assert!(e.to_string().contains("store busy (its code 11)"), "{e}");
    }

    #[test]
    fn exec_beside_runs_the_work_while_the_plugin_runs() {
        // A handshake, not a clock: the plugin says it started, then waits until the work
        // beside it has run. Run one after the other, this would hang until the deadline.
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        script(
            dir.path(),
            "waits",
            &format!(
                r#"cat >/dev/null; touch "{d}/started"
i=0; while [ ! -e "{d}/beside-done" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
[ -e "{d}/beside-done" ] || exit 3
echo '{{"cniVersion":"1.0.0"}}'"#
            ),
        );
        let conf = conf_with("waits", Duration::from_secs(20));
        let delegate = Delegate::default();
        let (out, saw_started) =
            delegate.exec_beside(Command::Check, &conf, &args_in(dir.path()), || {
                let started = dir.path().join("started");
                let seen = (0..1000).any(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    started.exists()
                });
                std::fs::write(dir.path().join("beside-done"), "").expect("mark");
                seen
            });
        assert!(saw_started, "the plugin was not running beside the work");
        assert_eq!(
            out.expect("the plugin answers").expect("a result")["cniVersion"],
            "1.0.0"
        );
        // A missing plugin is its error, and the work still runs.
        let conf = conf_with("absent", Duration::from_secs(1));
        let (out, ran) = delegate.exec_beside(Command::Check, &conf, &args_in(dir.path()), || true);
        assert!(ran);
        assert!(matches!(out, Err(Error::IpamMissing { .. })), "{out:?}");
    }
}
