//! One mail through casegate's whole ingest path per input (see
//! `casegate::ingest::fuzzing`): any panic, failure of casegate's own, or mail over its
//! time or memory budget is a crash that libFuzzer saves. Run it with `scripts/fuzz`.

#![no_main]

use std::cell::RefCell;

use casegate::ingest::fuzzing::{CountingAllocator, Harness, TIME_BUDGET};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

thread_local! {
    static HARNESS: RefCell<Harness> =
        RefCell::new(Harness::new().expect("the fuzz harness needs a temporary directory and its seeded database"));
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|harness| {
        if let Err(finding) = harness.borrow_mut().check(data, TIME_BUDGET) {
            panic!("{finding}");
        }
    });
});
