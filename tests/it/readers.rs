//! Readers racing rotations never see a torn, empty or missing file.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::*;

#[test]
fn concurrent_readers_only_ever_see_a_whole_certificate() {
    let mut env = Env::new();
    env.instance("inst-a");
    env.once(&[]).assert_code(0);
    let path = env.out("inst-a", "international");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (path, stop, reads) = (path.clone(), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match fs::read(&path) {
                        Ok(bytes) => {
                            if dds_certsync::certcheck::verify(&bytes, std::time::SystemTime::now())
                                .is_err()
                            {
                                bad.push(format!("torn read of {} bytes", bytes.len()));
                            }
                        }
                        Err(e) => bad.push(format!("read failed: {e}")),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                bad
            })
        })
        .collect();
    let rotations = 40;
    for _ in 0..rotations {
        env.standin.rotate("inst-a", "international");
        let run = env.once(&[]);
        run.assert_code(0);
        assert!(
            run.stdout.contains("international replaced"),
            "{}",
            run.all()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let bad: Vec<String> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    assert!(
        bad.is_empty(),
        "readers saw: {:?}",
        &bad[..bad.len().min(5)]
    );
    assert!(
        reads.load(Ordering::Relaxed) > rotations * 10,
        "readers actually raced"
    );
    assert_eq!(env.hook_runs("inst-a").len(), rotations + 1);
    assert_eq!(
        ls(&env.path("out")),
        vec!["inst-a-international.crt", "inst-a-national.crt"]
    );
}
