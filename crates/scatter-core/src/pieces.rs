//! Bytes held as pieces laid back to back, as a network read leaves them: where a range of
//! them lies, without copying them together first.

/// Where each piece of lengths `lens` starts when they are laid back to back from `origin`,
/// and where the last one ends.
pub fn starts(origin: u64, lens: impl Iterator<Item = usize>) -> (Vec<u64>, u64) {
    let mut end = origin;
    let starts = lens
        .map(|len| {
            let here = end;
            end += len as u64;
            here
        })
        .collect();
    (starts, end)
}

/// The parts of `pieces` (piece `i` starting at `starts[i]`) that hold bytes `at..end`, in
/// order, empty parts left out. Bytes outside the pieces are not there to return: the caller
/// checks that the range lies within them.
pub fn slices<'a, P: AsRef<[u8]>>(
    pieces: &'a [P],
    starts: &'a [u64],
    at: u64,
    end: u64,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    // The last piece starting at or before `at` (empty pieces share a start).
    let first = starts.partition_point(|s| *s <= at).saturating_sub(1);
    pieces[first.min(pieces.len())..]
        .iter()
        .zip(&starts[first.min(starts.len())..])
        .take_while(move |(_, start)| **start < end)
        .filter_map(move |(piece, start)| {
            let piece = piece.as_ref();
            let from = at.max(*start) - start;
            let to = end.min(start + piece.len() as u64) - start;
            (from < to).then(|| &piece[from as usize..to as usize])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_back_from_whichever_pieces_hold_them() {
        let pieces: Vec<&[u8]> = vec![b"ab", b"", b"cde", b"", b"f"];
        let (starts, end) = starts(10, pieces.iter().map(|p| p.len()));
        assert_eq!((starts.as_slice(), end), (&[10, 12, 12, 15, 15][..], 16));
        let all: Vec<u8> = b"abcdef".to_vec();
        for at in 10..=16 {
            for to in at..=16 {
                let got: Vec<u8> = slices(&pieces, &starts, at, to).flatten().copied().collect();
                assert_eq!(got, all[(at - 10) as usize..(to - 10) as usize], "{at}..{to}");
                assert!(slices(&pieces, &starts, at, to).all(|s| !s.is_empty()));
            }
        }
        assert_eq!(slices(&pieces, &starts, 12, 15).count(), 1, "a range within one piece is one slice");
        let none: [&[u8]; 0] = [];
        assert_eq!(slices(&none, &[], 0, 0).count(), 0);
    }
}
