//! `dds-demo`: an end-to-end demonstration of dds-certsync against the
//! stand-in. Placeholder; the lead engineer writes it.

fn main() {
    println!("todo");
}
