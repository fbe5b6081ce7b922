//! Ferrodactyl bot: the Discord bot. Built out in the bot issue.
fn main() {
    eprintln!("bot: not built yet (see the bot issue)");
    std::process::exit(2);
}
