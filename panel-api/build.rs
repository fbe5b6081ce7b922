// `sqlx::migrate!` embeds `migrations/` at compile time; without this, adding a
// migration file would not rebuild the crate and the binary would lack it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
