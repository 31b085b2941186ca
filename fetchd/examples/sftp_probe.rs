//! fetchd's SFTP origin on its own, against a server already running: what a read costs with no
//! FUSE, no IPC and no cache in the way. bench/remote.sh runs it beside the mounts, on the same
//! sshd and the same files, as the floor under their figures.
//!
//! ```text
//! sftp_probe URL IDENTITY KNOWN_HOSTS seq REL LOCAL [PID...]
//!     reads REL whole in 4 MiB pieces; prints "BYTES SECONDS SELF_NS PID_NS... BUSY_NS": the
//!     CPU time this process, each PID with its descendants, and the whole machine used meanwhile
//! sftp_probe URL IDENTITY KNOWN_HOSTS random REL LOCAL SIZE < OFFSETS
//!     one SIZE-byte read at each offset read from stdin (one per line); prints "MEDIAN P99"
//!     in seconds
//! ```
//!
//! Each connects and opens REL first, then drops the page cache (the server's too: it runs on
//! this machine), so only the reads are timed, against a cold disk. Every read is compared with
//! LOCAL (the file on the server's disk) after the timing, so a wrong byte fails the run.
//! Needs root (drop_caches). Build: `cargo build --release -p musicfs-fetchd --example sftp_probe`.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::process::exit;
use std::time::Instant;

use musicfs_fetchd::origin::{Origin, RangeRead};
use musicfs_fetchd::sftp::SftpOrigin;
use musicfs_ipc::origin::OriginConfig;

const SEQ_PIECE: usize = 4 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        fail("usage: sftp_probe URL IDENTITY KNOWN_HOSTS (seq|random) REL LOCAL [...]");
    }
    let mut config = OriginConfig::from_url(&args[0]);
    config.identity_file = Some(args[1].clone().into());
    config.known_hosts = Some(args[2].clone().into());
    let parsed = config
        .parsed()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", args[0])));
    let origin = SftpOrigin::new(&config, &parsed).unwrap_or_else(|e| fail(&e.to_string()));
    let (rel, local) = (
        &args[4],
        std::fs::File::open(&args[5]).unwrap_or_else(|e| fail(&format!("{}: {e}", args[5]))),
    );
    let file = origin
        .open(rel)
        .unwrap_or_else(|e| fail(&format!("{rel}: {e}")));
    drop_page_cache();
    match args[3].as_str() {
        "seq" => {
            let pids: Vec<u32> = args[6..]
                .iter()
                .map(|p| {
                    p.parse()
                        .unwrap_or_else(|_| fail(&format!("not a PID: {p}")))
                })
                .collect();
            seq(&*file, local, &pids)
        }
        "random" => {
            let size: usize = args
                .get(6)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| fail("random needs SIZE"));
            random(&*file, local, size)
        }
        other => fail(&format!("unknown measurement {other:?}")),
    }
}

fn seq(file: &dyn RangeRead, mut local: std::fs::File, pids: &[u32]) {
    let me = std::process::id();
    let mut buf = vec![0u8; SEQ_PIECE];
    let mut got = Vec::with_capacity(file.len() as usize);
    let cpu0 = cpu_used(me, pids);
    let start = Instant::now();
    loop {
        let n = file
            .read_at(got.len() as u64, &mut buf)
            .unwrap_or_else(|e| fail(&e.to_string()));
        got.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = cpu_used(me, pids);
    let mut want = Vec::new();
    local
        .read_to_end(&mut want)
        .unwrap_or_else(|e| fail(&e.to_string()));
    if got != want {
        fail("the bytes read differ from the server's file");
    }
    let used: Vec<String> = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| (b - a).to_string())
        .collect();
    println!("{} {secs:.6} {}", got.len(), used.join(" "));
}

fn random(file: &dyn RangeRead, mut local: std::fs::File, size: usize) {
    let offsets: Vec<u64> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| {
            l.ok()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or_else(|| fail("offsets: one number per line"))
        })
        .collect();
    if offsets.is_empty() {
        fail("no offsets on stdin");
    }
    let mut got = vec![vec![0u8; size]; offsets.len()];
    let mut took: Vec<f64> = offsets
        .iter()
        .zip(&mut got)
        .map(|(&offset, buf)| {
            let start = Instant::now();
            let n = file
                .read_at(offset, buf)
                .unwrap_or_else(|e| fail(&e.to_string()));
            buf.truncate(n);
            start.elapsed().as_secs_f64()
        })
        .collect();
    for (&offset, data) in offsets.iter().zip(&got) {
        let mut want = vec![0u8; size];
        local
            .seek(SeekFrom::Start(offset))
            .and_then(|_| local.read_exact(&mut want))
            .unwrap_or_else(|e| fail(&e.to_string()));
        if *data != want {
            fail(&format!(
                "{size} bytes at {offset} differ from the server's file"
            ));
        }
    }
    took.sort_by(f64::total_cmp);
    let p99 = took[(took.len() * 99 / 100).min(took.len() - 1)];
    println!("{:.6} {p99:.6}", took[took.len() / 2]);
}

/// CPU time (ns) used so far by this process, by each PID with its descendants, then the
/// machine's busy time (as bench/readprobe.py counts it).
fn cpu_used(me: u32, pids: &[u32]) -> Vec<u64> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some(ppid) = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    fn used(
        pid: u32,
        children: &std::collections::HashMap<u32, Vec<u32>>,
        with_children: bool,
    ) -> u64 {
        let own: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum();
        let kids = children
            .get(&pid)
            .filter(|_| with_children)
            .map_or(0, |c| c.iter().map(|&c| used(c, children, true)).sum());
        own + kids
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks = fields.iter().take(8).sum::<u64>()
        - fields.get(3).unwrap_or(&0)
        - fields.get(4).unwrap_or(&0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let mut out = vec![used(me, &children, false)];
    out.extend(pids.iter().map(|&p| used(p, &children, true)));
    out.push(ticks * 1_000_000_000 / hz);
    out
}

fn drop_page_cache() {
    nix::unistd::sync();
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        fail(&format!("dropping the page cache (needs root): {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("sftp_probe: {msg}");
    exit(1)
}
