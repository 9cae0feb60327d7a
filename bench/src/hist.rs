//! A log-linear latency histogram (32 sub-buckets per power of two, so about 3% precision)
//! that is cheap to record into from thousands of threads, merges across processes, and
//! travels between processes as one line of text.

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let sub = (value >> (exponent - SUB_BITS)) & (SUB - 1);
    ((exponent - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The middle of the values bucket `index` holds.
fn midpoint(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exponent = (index / SUB) as u32 + SUB_BITS - 1;
    let shift = exponent - SUB_BITS;
    let low = (SUB + index % SUB) << shift;
    low + (1u64 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The exact largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` (0..=1) of the samples lie; 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return midpoint(i).min(self.max);
            }
        }
        self.max
    }

    /// `index:count` pairs of the non-empty buckets, then `max:value`, comma-separated.
    pub fn encode(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                out.push(format!("{i}:{count}"));
            }
        }
        out.push(format!("max:{}", self.max));
        out.join(",")
    }

    pub fn decode(text: &str) -> Result<Histogram, String> {
        let mut hist = Histogram::default();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once(':').ok_or_else(|| format!("bad histogram entry {pair}"))?;
            let value: u64 = value.parse().map_err(|_| format!("bad histogram entry {pair}"))?;
            if key == "max" {
                hist.max = hist.max.max(value);
                continue;
            }
            let i: usize = key.parse().map_err(|_| format!("bad histogram entry {pair}"))?;
            *hist.counts.get_mut(i).ok_or_else(|| format!("bad histogram bucket {i}"))? += value;
            hist.total += value;
        }
        Ok(hist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_precise() {
        let mut previous = 0;
        for value in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(value);
            assert!(i >= previous && i < BUCKETS, "value {value} index {i}");
            previous = i;
            let mid = midpoint(i) as f64;
            assert!((mid - value as f64).abs() <= value as f64 * 0.04 + 1.0, "value {value} mid {mid}");
        }
    }

    #[test]
    fn quantiles_survive_a_round_trip() {
        let mut hist = Histogram::default();
        for v in 1..=1000u64 {
            hist.record(v * 1000);
        }
        let back = Histogram::decode(&hist.encode()).unwrap();
        assert_eq!(back.count(), 1000);
        assert_eq!(back.max(), 1_000_000);
        let p50 = back.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() < 20_000.0, "{p50}");
        assert_eq!(back.quantile(1.0), 1_000_000);
    }
}
