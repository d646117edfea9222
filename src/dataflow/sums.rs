//! `Sums<N>`: a difference type that carries N fixed-point sums, so one update per record and key
//! maintains several aggregates at once (count, positives, loss sums, …).

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// N integer sums added component-wise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sums<const N: usize>(pub [i64; N]);

impl<const N: usize> IsZero for Sums<N> {
    fn is_zero(&self) -> bool {
        self.0.iter().all(|x| *x == 0)
    }
}

impl<const N: usize> Semigroup for Sums<N> {
    fn plus_equals(&mut self, rhs: &Self) {
        for (a, b) in self.0.iter_mut().zip(rhs.0.iter()) {
            *a += *b;
        }
    }
}

impl<const N: usize> Monoid for Sums<N> {
    fn zero() -> Self {
        Sums([0; N])
    }
}

impl<const N: usize> Abelian for Sums<N> {
    fn negate(&mut self) {
        for a in self.0.iter_mut() {
            *a = -*a;
        }
    }
}

impl<const N: usize> Multiply<isize> for Sums<N> {
    type Output = Sums<N>;
    fn multiply(mut self, rhs: &isize) -> Sums<N> {
        for a in self.0.iter_mut() {
            *a *= *rhs as i64;
        }
        self
    }
}

impl<const N: usize> Serialize for Sums<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Sums<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<i64>::deserialize(d)?;
        let n = v.len();
        v.try_into()
            .map(Sums)
            .map_err(|_| serde::de::Error::invalid_length(n, &"N sums"))
    }
}
