//! Starts the PostgreSQL cluster of one test run in the folder given as argument,
//! prints its admin URL on stdout, and keeps it up until SIGTERM/SIGINT.
fn main() {
    let dir = std::env::args().nth(1).expect("usage: test-pg DIR");
    // Block the stop signals in every thread (the cluster's keeper thread inherits
    // the mask), then wait for one of them here and stop the cluster cleanly.
    // SAFETY: plain libc signal-mask calls on a zeroed sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let cluster = pgcluster::Cluster::start(
        std::path::Path::new(&dir),
        &pgcluster::Options {
            fast_unsafe: true,
            max_connections: 300,
        },
    )
    .unwrap_or_else(|e| {
        eprintln!("test-pg: {e:#}");
        std::process::exit(1);
    });
    println!("{}", cluster.url("postgres"));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut sig = 0;
    // SAFETY: waits on the signal set built above.
    unsafe {
        libc::sigwait(&set, &mut sig);
    }
    drop(cluster);
}
