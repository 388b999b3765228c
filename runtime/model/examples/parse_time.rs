//! Prints how long parsing and validating a workflow file takes (a rough number, not a
//! benchmark): `cargo run --release -p meridian-model --example parse_time -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: parse_time FILE");
    let text = std::fs::read_to_string(&path).expect("read");
    let start = std::time::Instant::now();
    let mut n = 0u32;
    // Repeat for about a second so short files give a stable average.
    while n < 3 || start.elapsed() < std::time::Duration::from_secs(1) {
        let _ = meridian_model::parse(&path, &text);
        n += 1;
    }
    let per = start.elapsed() / n;
    match meridian_model::parse(&path, &text) {
        Ok(wf) => println!("{} steps, {per:?} per parse ({n} runs)", wf.steps.len()),
        Err(e) => println!("{e}\n{per:?} per parse ({n} runs)"),
    }
}
