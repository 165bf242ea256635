//! `log_page_columns`: the fields of a page of raw Redis log entries as columns, for the replicas' bulk
//! decoder (`server/edgesel_server/store/redis.py` `_Page`). Only translation: the entry format
//! is read by [`crate::log_entry`].

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::log_entry::{parse_decimal, parse_seq, FIELD_NAMES};

/// One entry's values, borrowed from its Python objects.
struct Entry<'py> {
    seq: u64,
    values: [Bound<'py, PyBytes>; 7],
}

/// `[id, [k, v, k, v, …]]` in edgesel's canonical form, or `None`.
fn canonical<'py>(entry: &Bound<'py, PyAny>) -> Option<Entry<'py>> {
    let pair = entry.cast::<PyList>().ok()?;
    if pair.len() != 2 {
        return None;
    }
    let seq = parse_seq(pair.get_item(0).ok()?.cast::<PyBytes>().ok()?.as_bytes())?;
    let flat = pair.get_item(1).ok()?;
    let flat = flat.cast::<PyList>().ok()?;
    if flat.len() != 2 * FIELD_NAMES.len() {
        return None;
    }
    let mut values = Vec::with_capacity(FIELD_NAMES.len());
    for (j, name) in FIELD_NAMES.iter().enumerate() {
        let key = flat.get_item(2 * j).ok()?;
        if key.cast::<PyBytes>().ok()?.as_bytes() != *name {
            return None;
        }
        values.push(flat.get_item(2 * j + 1).ok()?.cast_into::<PyBytes>().ok()?);
    }
    Some(Entry {
        seq,
        values: values.try_into().ok()?,
    })
}

/// Python `str` of UTF-8 bytes, one object per distinct value of the page (kinds and model ids repeat).
fn interned<'py>(
    py: Python<'py>,
    cache: &mut HashMap<Vec<u8>, Bound<'py, PyString>>,
    raw: &[u8],
) -> Option<Bound<'py, PyString>> {
    if let Some(s) = cache.get(raw) {
        return Some(s.clone());
    }
    let s = PyString::new(py, std::str::from_utf8(raw).ok()?);
    cache.insert(raw.to_vec(), s.clone());
    Some(s)
}

/// The columns of raw XRANGE/XREAD entries `[[id, [k, v, …]], …]` as hiredis returns them: `(seqs, kinds,
/// event_ids, model_ids, x_blobs, rewards, payloads, created)`, each a list in entry order — exactly what
/// `_decode_entries` reads from each entry (`str` of the UTF-8 kinds and ids, `None` for an empty event id,
/// `float` of the numbers, the x and payload `bytes` objects themselves). `None` if any entry is not in
/// edgesel's canonical form (other field order, a number `float()` would read but not as plain decimal
/// text, …): the caller then decodes the page in Python, as before.
#[pyfunction]
pub fn log_page_columns<'py>(
    py: Python<'py>,
    entries: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Ok(entries) = entries.cast::<PyList>() else {
        return Ok(None);
    };
    let n = entries.len();
    let (mut seqs, mut kinds, mut event_ids, mut model_ids) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut blobs, mut rewards, mut payloads, mut created) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut cache = HashMap::new();
    for entry in entries.iter() {
        let Some(Entry { seq, values }) = canonical(&entry) else {
            return Ok(None);
        };
        let [k, e, m, x, r, p, c] = values;
        let (Some(kind), Some(model_id)) = (
            interned(py, &mut cache, k.as_bytes()),
            interned(py, &mut cache, m.as_bytes()),
        ) else {
            return Ok(None);
        };
        let event_id = match e.as_bytes() {
            b"" => None,
            raw => match std::str::from_utf8(raw) {
                Ok(s) => Some(PyString::new(py, s)),
                Err(_) => return Ok(None),
            },
        };
        let (Some(reward), Some(at)) = (parse_decimal(r.as_bytes()), parse_decimal(c.as_bytes()))
        else {
            return Ok(None);
        };
        seqs.push(seq);
        kinds.push(kind);
        event_ids.push(event_id);
        model_ids.push(model_id);
        blobs.push(x);
        rewards.push(reward);
        payloads.push(p);
        created.push(at);
    }
    let columns = (
        PyList::new(py, seqs)?,
        PyList::new(py, kinds)?,
        PyList::new(py, event_ids)?,
        PyList::new(py, model_ids)?,
        PyList::new(py, blobs)?,
        PyList::new(py, rewards)?,
        PyList::new(py, payloads)?,
        PyList::new(py, created)?,
    );
    Ok(Some(columns.into_pyobject(py)?))
}
