//! What every bench measures with: a rate, and the median of rounds. Included by the benches
//! that compare phasegate with a raw commit (`mod yardstick;`), so that they measure alike.

use std::time::Duration;

/// How many of something per second.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// The median of the rounds' values.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
