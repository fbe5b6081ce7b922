//! Ferrodactyl wings: the host daemon. Built out in the daemon-protocol issue.
fn main() {
    eprintln!("wings: not built yet (see the daemon-protocol issue)");
    std::process::exit(2);
}
