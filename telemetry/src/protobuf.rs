//! OTLP's `ExportTraceServiceRequest`, written as protobuf straight from the SDK's finished
//! spans ([`Encoder::request`]) or from a caller's own values ([`EncodedSpans::push`]).
//!
//! `opentelemetry-otlp` first turns each `SpanData` into `opentelemetry-proto`'s message
//! structs (every attribute's key and value copied into a new `String`, every id into a new
//! `Vec`, the spans grouped through a hash map keyed by their scope), then encodes those and
//! frees them. At every request traced, that was most of the export thread's work (4.7 µs
//! of CPU per request of two spans, `docs/benchmarks.md`), on a machine whose two cores
//! also serve the requests. Here the same message is written field by field into one
//! reused buffer: nothing is allocated per span. The unit tests decode what is written with
//! `opentelemetry-proto`'s own types and compare it with that crate's conversion of the same
//! spans, so the two cannot drift apart.
//!
//! The field numbers are those of `opentelemetry/proto/{collector/trace,trace,common,
//! resource}/v1/*.proto`. Fields at their default value are left out, as protobuf's own
//! encoders do; a oneof's value is always written.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use std::time::{SystemTime, UNIX_EPOCH};

// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the flags say whether the parent is remote, and it is.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Buffers kept from one export to the next, so a batch allocates nothing once they have
/// grown to a batch's size.
#[derive(Debug, Default)]
pub struct Encoder {
    /// One scope's spans.
    spans: Vec<u8>,
    /// One `ResourceSpans`' fields.
    resource_spans: Vec<u8>,
    /// Which scope each span of the batch is of (an index into the batch's scopes).
    scope_of: Vec<usize>,
}

impl Encoder {
    /// The request carrying `spans` of `resource`, written into `out` (cleared first).
    pub(crate) fn request(&mut self, spans: &[SpanData], resource: &Resource, out: &mut Vec<u8>) {
        out.clear();
        if spans.is_empty() {
            return;
        }
        let body = &mut self.resource_spans;
        body.clear();
        put_resource(body, resource);
        // ResourceSpans.scope_spans = 2, one per scope in the order of first appearance (a
        // batch usually has one: the binary's tracer).
        let mut scopes: Vec<&InstrumentationScope> = Vec::new();
        self.scope_of.clear();
        for span in spans {
            let scope = &span.instrumentation_scope;
            // The span before's scope first: one comparison a span in the usual batch.
            let index = match self.scope_of.last() {
                Some(&last) if scopes[last] == scope => last,
                _ => match scopes.iter().position(|s| *s == scope) {
                    Some(i) => i,
                    None => {
                        scopes.push(scope);
                        scopes.len() - 1
                    }
                },
            };
            self.scope_of.push(index);
        }
        for (index, scope) in scopes.into_iter().enumerate() {
            self.spans.clear();
            let of_scope = spans
                .iter()
                .zip(&self.scope_of)
                .filter(|(_, s)| **s == index)
                .map(|(span, _)| span);
            for span in of_scope {
                put_nested_with(&mut self.spans, 2, |out| put_span(out, span));
            }
            put_scope_spans(body, scope, &self.spans);
        }
        finish(body, resource, out);
    }

    /// The request carrying `spans` (already written, all of `scope`) of `resource`, written
    /// into `out` (cleared first).
    pub fn scope_request(
        &mut self,
        spans: &EncodedSpans,
        scope: &InstrumentationScope,
        resource: &Resource,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        if spans.count == 0 {
            return;
        }
        // Written straight into `out`, the lengths worked out first: the spans' bytes are
        // copied once, into the request.
        let attributes = resource_attributes(resource);
        let resource_len = resource_len(&attributes);
        let schema = scope.schema_url().unwrap_or_default();
        let scope_spans_len =
            nested_len(1, scope_len(scope)) + spans.bytes.len() + string_len(3, schema);
        let resource_schema = resource.schema_url().unwrap_or_default();
        let body_len = nested_len(1, resource_len)
            + nested_len(2, scope_spans_len)
            + string_len(3, resource_schema);
        out.reserve(nested_len(1, body_len));
        // ExportTraceServiceRequest.resource_spans = 1
        put_len_prefix(out, 1, body_len);
        put_len_prefix(out, 1, resource_len);
        for (k, v) in &attributes {
            put_key_value(out, 1, k, v);
        }
        put_len_prefix(out, 2, scope_spans_len);
        put_len_prefix(out, 1, scope_len(scope));
        put_scope(out, scope);
        out.extend_from_slice(&spans.bytes);
        put_string(out, 3, schema);
        put_string(out, 3, resource_schema);
    }
}

/// `ResourceSpans.resource = 1`.
fn put_resource(body: &mut Vec<u8>, resource: &Resource) {
    let attributes = resource_attributes(resource);
    put_len_prefix(body, 1, resource_len(&attributes));
    for (k, v) in &attributes {
        put_key_value(body, 1, k, v);
    }
}

fn resource_attributes(resource: &Resource) -> Vec<(&str, &Value)> {
    resource.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

/// The size of a `Resource` holding `attributes`.
fn resource_len(attributes: &[(&str, &Value)]) -> usize {
    attributes
        .iter()
        .map(|(k, v)| nested_len(1, key_value_len(k, v)))
        .sum()
}

/// `ResourceSpans.scope_spans = 2` of `scope`, around its spans' bytes.
fn put_scope_spans(body: &mut Vec<u8>, scope: &InstrumentationScope, spans: &[u8]) {
    let schema = scope.schema_url().unwrap_or_default();
    put_len_prefix(
        body,
        2,
        nested_len(1, scope_len(scope)) + spans.len() + string_len(3, schema),
    );
    put_len_prefix(body, 1, scope_len(scope));
    put_scope(body, scope);
    body.extend_from_slice(spans);
    put_string(body, 3, schema);
}

/// `ResourceSpans.schema_url = 3`, then the request around the resource's spans.
fn finish(body: &mut Vec<u8>, resource: &Resource, out: &mut Vec<u8>) {
    put_string(body, 3, resource.schema_url().unwrap_or_default());
    // ExportTraceServiceRequest.resource_spans = 1
    put_bytes(out, 1, body);
}

/// What a span is, apart from its attributes, for [`EncodedSpans::push`]: the values a
/// caller already holds, written without being made into the SDK's `SpanData` first.
#[derive(Debug, Clone)]
pub struct SpanFields<'a> {
    pub trace_id: u128,
    pub span_id: u64,
    /// The parent's span id and whether it is of another process; `None` for a root.
    pub parent: Option<(u64, bool)>,
    /// The W3C `tracestate`, as its header carries it (`""`: none).
    pub trace_state: &'a str,
    pub kind: SpanKind,
    /// The name, written as these parts joined by a space (`["GET", "route"]`).
    pub name: [&'a str; 2],
    pub start: SystemTime,
    pub end: SystemTime,
    /// `None`: unset; `Some(description)`: an error.
    pub error: Option<&'a str>,
}

/// An attribute's value, as [`EncodedSpans::push`] writes it.
#[derive(Debug, Clone, Copy)]
pub enum Attr<'a> {
    Str(&'a str),
    Int(i64),
    /// Written as a string, as `Display` writes it.
    Ip(std::net::IpAddr),
}

/// Spans of one scope written as they come, for [`Encoder::scope_request`]. Kept from
/// batch to batch; [`EncodedSpans::clear`] empties it.
#[derive(Debug, Default)]
pub struct EncodedSpans {
    bytes: Vec<u8>,
    /// An address's text, before its length is written.
    text: Vec<u8>,
    count: usize,
}

impl EncodedSpans {
    /// Spans written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Writes one sampled span, as the SDK's conversion of the same span would be written.
    pub fn push(&mut self, f: &SpanFields<'_>, attributes: &[(&str, Attr<'_>)]) {
        let text = &mut self.text;
        // ScopeSpans.spans = 2, written in place.
        put_nested_with(&mut self.bytes, 2, |out| {
            write_span(out, text, f, attributes)
        });
        self.count += 1;
    }
}

/// One span from its fields, as [`EncodedSpans::push`] writes it (`text`: a buffer for an
/// address's text).
fn write_span(
    out: &mut Vec<u8>,
    text: &mut Vec<u8>,
    f: &SpanFields<'_>,
    attributes: &[(&str, Attr<'_>)],
) {
    put_bytes(out, 1, &f.trace_id.to_be_bytes());
    put_bytes(out, 2, &f.span_id.to_be_bytes());
    put_string(out, 3, f.trace_state);
    if let Some((parent, _)) = f.parent.filter(|(p, _)| *p != 0) {
        put_bytes(out, 4, &parent.to_be_bytes());
    }
    let [first, second] = f.name;
    let name_len = first.len()
        + if second.is_empty() {
            0
        } else {
            1 + second.len()
        };
    if name_len > 0 {
        put_len_prefix(out, 5, name_len);
        out.extend_from_slice(first.as_bytes());
        if !second.is_empty() {
            out.push(b' ');
            out.extend_from_slice(second.as_bytes());
        }
    }
    put_uint(out, 6, kind(&f.kind));
    put_fixed64(out, 7, nanos(f.start));
    put_fixed64(out, 8, nanos(f.end));
    for (key, value) in attributes {
        // A string's bytes (an address's written first), or an integer.
        let scalar = match *value {
            Attr::Ip(ip) => {
                text.clear();
                crate::text::write_ip(text, ip);
                // Digits, dots and colons: UTF-8.
                Scalar::Str(std::str::from_utf8(text).unwrap_or_default())
            }
            Attr::Str(v) => Scalar::Str(v),
            Attr::Int(i) => Scalar::Int(i),
        };
        put_scalar_key_value(out, 9, key, &scalar);
    }
    match f.error {
        None => put_status(out, "", 0),
        Some(description) => put_status(out, description, 2),
    }
    let remote = f.parent.is_some_and(|(_, remote)| remote);
    put_fixed32(out, 16, span_flags(remote, 1));
}

fn put_span(out: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    put_bytes(out, 1, &context.trace_id().to_bytes());
    put_bytes(out, 2, &context.span_id().to_bytes());
    put_string(out, 3, &context.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    put_string(out, 5, &span.name);
    put_uint(out, 6, kind(&span.span_kind));
    put_fixed64(out, 7, nanos(span.start_time));
    put_fixed64(out, 8, nanos(span.end_time));
    put_attributes(out, 9, &span.attributes);
    put_uint(out, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        let len = fixed64_len(1, nanos(event.timestamp))
            + string_len(2, &event.name)
            + attributes_len(3, &event.attributes)
            + uint_len(4, u64::from(event.dropped_attributes_count));
        put_len_prefix(out, 11, len);
        put_fixed64(out, 1, nanos(event.timestamp));
        put_string(out, 2, &event.name);
        put_attributes(out, 3, &event.attributes);
        put_uint(out, 4, u64::from(event.dropped_attributes_count));
    }
    put_uint(out, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        let lc = &link.span_context;
        let state = lc.trace_state().header();
        let flags = span_flags(lc.is_remote(), lc.trace_flags().to_u8());
        let len = bytes_len(1, 16)
            + bytes_len(2, 8)
            + string_len(3, &state)
            + attributes_len(4, &link.attributes)
            + uint_len(5, u64::from(link.dropped_attributes_count))
            + fixed32_len(6, flags);
        put_len_prefix(out, 13, len);
        put_bytes(out, 1, &lc.trace_id().to_bytes());
        put_bytes(out, 2, &lc.span_id().to_bytes());
        put_string(out, 3, &state);
        put_attributes(out, 4, &link.attributes);
        put_uint(out, 5, u64::from(link.dropped_attributes_count));
        put_fixed32(out, 6, flags);
    }
    put_uint(out, 14, u64::from(span.links.dropped_count));
    match &span.status {
        Status::Unset => put_status(out, "", 0),
        Status::Ok => put_status(out, "", 1),
        Status::Error { description } => put_status(out, description, 2),
    }
    put_fixed32(
        out,
        16,
        span_flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
    );
}

/// `Span.status = 15`: `Status { message = 2, code = 3 }` (0 unset, 1 ok, 2 error), always
/// present, as the SDK's conversion makes it.
fn put_status(out: &mut Vec<u8>, message: &str, code: u64) {
    put_len_prefix(out, 15, string_len(2, message) + uint_len(3, code));
    put_string(out, 2, message);
    put_uint(out, 3, code);
}

/// `SpanKind` of the protocol (0 is UNSPECIFIED, never written by the SDK).
fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn span_flags(parent_is_remote: bool, trace_flags: u8) -> u32 {
    let remote = if parent_is_remote { IS_REMOTE } else { 0 };
    u32::from(trace_flags) | HAS_IS_REMOTE | remote
}

/// Nanoseconds since the Unix epoch; 0 before it, as the protocol's conversion has it.
fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn scope_len(scope: &InstrumentationScope) -> usize {
    string_len(1, scope.name())
        + string_len(2, scope.version().unwrap_or_default())
        + scope
            .attributes()
            .map(|kv| nested_len(3, key_value_len(kv.key.as_str(), &kv.value)))
            .sum::<usize>()
}

fn put_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    put_string(out, 1, scope.name());
    put_string(out, 2, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        put_key_value(out, 3, kv.key.as_str(), &kv.value);
    }
}

fn attributes_len(field: u32, attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| nested_len(field, key_value_len(kv.key.as_str(), &kv.value)))
        .sum()
}

fn put_attributes(out: &mut Vec<u8>, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        put_key_value(out, field, kv.key.as_str(), &kv.value);
    }
}

/// `KeyValue { key = 1, value = 2 }`'s length.
fn key_value_len(key: &str, value: &Value) -> usize {
    string_len(1, key) + nested_len(2, any_value_len(value))
}

fn put_key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    if let Some(s) = scalar(value) {
        return put_scalar_key_value(out, field, key, &s);
    }
    let value_len = any_value_len(value);
    put_len_prefix(out, field, string_len(1, key) + nested_len(2, value_len));
    put_string(out, 1, key);
    put_len_prefix(out, 2, value_len);
    put_any_value(out, value);
}

/// A `KeyValue` whose value is one scalar.
fn put_scalar_key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Scalar<'_>) {
    let value_len = value.len();
    put_len_prefix(out, field, string_len(1, key) + nested_len(2, value_len));
    put_string(out, 1, key);
    put_len_prefix(out, 2, value_len);
    value.put(out);
}

/// One value of an attribute (or one element of an array attribute), as the `AnyValue`
/// oneof's field it is written in.
enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    fn len(&self) -> usize {
        match self {
            Scalar::Bool(_) => 2,
            Scalar::Int(i) => 1 + encoded_len_varint(*i as u64),
            Scalar::Double(_) => 9,
            Scalar::Str(s) => 1 + encoded_len_varint(s.len() as u64) + s.len(),
        }
    }

    /// The oneof's field, always written (even at a default value).
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Scalar::Bool(b) => {
                put_key(out, 2, VARINT);
                out.push(u8::from(*b));
            }
            Scalar::Int(i) => {
                put_key(out, 3, VARINT);
                encode_varint(*i as u64, out);
            }
            Scalar::Double(d) => {
                put_key(out, 4, FIXED64);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Scalar::Str(s) => {
                put_key(out, 1, LEN);
                encode_varint(s.len() as u64, out);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// The elements of an array attribute (`Array` may grow kinds this does not know: those
/// are written as an empty array, as a value of an unknown kind is written as no value).
fn elements(array: &Array) -> Vec<Scalar<'_>> {
    match array {
        Array::Bool(v) => v.iter().map(|b| Scalar::Bool(*b)).collect(),
        Array::I64(v) => v.iter().map(|i| Scalar::Int(*i)).collect(),
        Array::F64(v) => v.iter().map(|d| Scalar::Double(*d)).collect(),
        Array::String(v) => v
            .iter()
            .map(|s| Scalar::Str(StringValue::as_str(s)))
            .collect(),
        _ => Vec::new(),
    }
}

fn scalar(value: &Value) -> Option<Scalar<'_>> {
    match value {
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::I64(i) => Some(Scalar::Int(*i)),
        Value::F64(d) => Some(Scalar::Double(*d)),
        Value::String(s) => Some(Scalar::Str(s.as_str())),
        _ => None,
    }
}

/// `AnyValue`'s length: one oneof field (`array_value = 5` holds `ArrayValue { values = 1 }`).
fn any_value_len(value: &Value) -> usize {
    if let Some(s) = scalar(value) {
        return s.len();
    }
    match value {
        Value::Array(array) => nested_len(5, array_len(&elements(array))),
        _ => 0,
    }
}

fn array_len(elements: &[Scalar<'_>]) -> usize {
    elements.iter().map(|e| nested_len(1, e.len())).sum()
}

fn put_any_value(out: &mut Vec<u8>, value: &Value) {
    if let Some(s) = scalar(value) {
        s.put(out);
        return;
    }
    if let Value::Array(array) = value {
        let elements = elements(array);
        put_len_prefix(out, 5, array_len(&elements));
        for e in &elements {
            put_len_prefix(out, 1, e.len());
            e.put(out);
        }
    }
}

// The primitives. Each `*_len` is what the matching `put_*` writes.

/// A base-128 varint (prost's takes a `BufMut`, whose every byte is a capacity check).
fn encode_varint(v: u64, out: &mut Vec<u8>) {
    let mut v = v;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encoded_len_varint(v: u64) -> usize {
    // Seven bits a byte; 0 takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    encode_varint(u64::from(field << 3 | wire), out);
}

fn key_len(field: u32) -> usize {
    encoded_len_varint(u64::from(field << 3))
}

/// A length-delimited field's size around `len` bytes of content.
fn nested_len(field: u32, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

fn put_len_prefix(out: &mut Vec<u8>, field: u32, len: usize) {
    put_key(out, field, LEN);
    encode_varint(len as u64, out);
}

/// A length-delimited field whose content `write` appends to `out` in place: the length is
/// written after the content, in the two bytes kept for it (a span's usual size), moved
/// only when it needs one byte or more than two. No copy of the content is made.
fn put_nested_with(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    put_key(out, field, LEN);
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    write(out);
    let len = out.len() - at - 2;
    match encoded_len_varint(len as u64) {
        2 => {
            out[at] = (len as u8) | 0x80;
            out[at + 1] = (len >> 7) as u8;
        }
        1 => {
            out[at] = len as u8;
            out.remove(at + 1);
        }
        _ => {
            let mut prefix = Vec::with_capacity(10);
            encode_varint(len as u64, &mut prefix);
            out.splice(at..at + 2, prefix);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_len_prefix(out, field, bytes.len());
        out.extend_from_slice(bytes);
    }
}

fn bytes_len(field: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        nested_len(field, len)
    }
}

fn put_string(out: &mut Vec<u8>, field: u32, s: &str) {
    put_bytes(out, field, s.as_bytes());
}

fn string_len(field: u32, s: &str) -> usize {
    bytes_len(field, s.len())
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, VARINT);
        encode_varint(v, out);
    }
}

fn uint_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + encoded_len_varint(v)
    }
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed64_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + 8
    }
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        put_key(out, field, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32_len(field: u32, v: u32) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;

    #[test]
    fn a_field_written_in_place_is_the_field_written_from_a_copy_at_every_length_size() {
        // Lengths that take one, two and three bytes, and the edges between them.
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let content: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut in_place = vec![0xEE];
            put_nested_with(&mut in_place, 2, |out| out.extend_from_slice(&content));
            let mut copied = vec![0xEE];
            put_len_prefix(&mut copied, 2, len);
            copied.extend_from_slice(&content);
            assert_eq!(in_place, copied, "length {len}");
        }
    }

    #[test]
    fn varints_are_prosts() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            encode_varint(v, &mut ours);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(
                encoded_len_varint(v),
                prost::encoding::encoded_len_varint(v),
                "{v}"
            );
        }
    }
    use std::time::Duration;

    fn context(
        trace: u128,
        span: u64,
        flags: TraceFlags,
        remote: bool,
        state: &str,
    ) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            remote,
            state.parse::<TraceState>().unwrap(),
        )
    }

    fn span(n: u64, scope: &InstrumentationScope) -> SpanData {
        SpanData {
            span_context: context(
                0xabc0 + u128::from(n),
                0x10 + n,
                TraceFlags::SAMPLED,
                false,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: format!("GET route-{n}").into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + n),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789 + n),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200_i64),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Every kind of field and value the SDK can hand over, at defaults and not.
    fn assorted() -> (Vec<SpanData>, Resource) {
        let gateway = InstrumentationScope::builder("gateway").build();
        let other = InstrumentationScope::builder("other")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", true)])
            .build();
        let mut spans: Vec<SpanData> = (0..4).map(|n| span(n, &gateway)).collect();
        // A child of a remote parent, with a trace state, every value kind and an error.
        let mut s = span(10, &gateway);
        s.span_context = context(
            u128::MAX,
            u64::MAX,
            TraceFlags::SAMPLED,
            false,
            "vendor=abc,other=1",
        );
        s.parent_span_id = SpanId::from(0x77);
        s.parent_span_is_remote = true;
        s.span_kind = SpanKind::Client;
        s.attributes = vec![
            KeyValue::new("s", ""),
            KeyValue::new("unicode", "grüße ☃"),
            KeyValue::new("b", false),
            KeyValue::new("i0", 0_i64),
            KeyValue::new("neg", -1_i64),
            KeyValue::new("max", i64::MAX),
            KeyValue::new("f", 0.0_f64),
            KeyValue::new("double", 1.5_f64),
            KeyValue::new("ab", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ai", Value::Array(Array::I64(vec![0, -5, 300]))),
            KeyValue::new("af", Value::Array(Array::F64(vec![0.25]))),
            KeyValue::new(
                "as",
                Value::Array(Array::String(vec!["x".into(), "".into()])),
            ),
            KeyValue::new("empty", Value::Array(Array::I64(vec![]))),
            KeyValue::new("long", "x".repeat(300)),
        ];
        s.dropped_attributes_count = 3;
        s.status = Status::error("502");
        s.events.events = vec![
            Event::new(
                "retry",
                UNIX_EPOCH + Duration::from_secs(5),
                vec![KeyValue::new("n", 2_i64)],
                1,
            ),
            Event::new("", UNIX_EPOCH, vec![], 0),
        ];
        s.events.dropped_count = 4;
        s.links.links = vec![Link::new(
            context(5, 6, TraceFlags::default(), true, "k=v"),
            vec![KeyValue::new("l", "x")],
            2,
        )];
        s.links.dropped_count = 1;
        spans.push(s);
        // Another scope, an OK status, each kind, and a time before the epoch.
        for (i, kind) in [SpanKind::Internal, SpanKind::Producer, SpanKind::Consumer]
            .into_iter()
            .enumerate()
        {
            let mut s = span(20 + i as u64, &other);
            s.span_kind = kind;
            s.status = Status::Ok;
            s.start_time = UNIX_EPOCH - Duration::from_secs(1);
            spans.push(s);
        }
        // Back to the first scope after the second: still grouped under it.
        spans.push(span(30, &gateway));
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "gateway"),
                KeyValue::new("service.instance.id", "127.0.0.1:8080"),
                KeyValue::new("service.version", "0.1.0"),
            ])
            .with_schema_url([], "https://opentelemetry.io/schemas/1.30.0")
            .build();
        (spans, resource)
    }

    fn reference(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    fn ours(spans: &[SpanData], resource: &Resource) -> ExportTraceServiceRequest {
        let mut out = Vec::new();
        Encoder::default().request(spans, resource, &mut out);
        ExportTraceServiceRequest::decode(out.as_slice()).unwrap()
    }

    #[test]
    fn the_request_decodes_to_what_the_protocols_own_conversion_makes() {
        let (spans, resource) = assorted();
        assert_eq!(ours(&spans, &resource), reference(spans, &resource));
    }

    #[test]
    fn each_span_alone_decodes_the_same_and_an_empty_batch_is_empty() {
        let (spans, resource) = assorted();
        for s in spans {
            assert_eq!(
                ours(std::slice::from_ref(&s), &resource),
                reference(vec![s], &resource)
            );
        }
        let mut out = vec![1, 2, 3];
        Encoder::default().request(&[], &resource, &mut out);
        assert!(out.is_empty());
    }

    /// A span both ways: as fields for [`EncodedSpans::push`], and as the SDK's `SpanData`.
    fn both_ways(
        parent: Option<(u64, bool)>,
        trace_state: &str,
        kind: SpanKind,
        name: [&str; 2],
        error: Option<&str>,
    ) -> (SpanFields<'static>, SpanData) {
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let fields = SpanFields {
            trace_id: 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
            span_id: 0xb7ad_6b71_6920_3331,
            parent,
            trace_state: leak(trace_state),
            kind: kind.clone(),
            name: [leak(name[0]), leak(name[1])],
            start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
            end: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_500_000_000),
            error: error.map(leak),
        };
        let scope = InstrumentationScope::builder("gateway").build();
        let mut data = span(0, &scope);
        data.span_context = context(
            fields.trace_id,
            fields.span_id,
            TraceFlags::SAMPLED,
            false,
            trace_state,
        );
        (data.parent_span_id, data.parent_span_is_remote) = match parent {
            Some((p, remote)) => (SpanId::from(p), remote),
            None => (SpanId::INVALID, false),
        };
        data.span_kind = kind;
        data.name = if name[1].is_empty() {
            name[0].to_string().into()
        } else {
            format!("{} {}", name[0], name[1]).into()
        };
        (data.start_time, data.end_time) = (fields.start, fields.end);
        data.attributes = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("server.port", 8086_i64),
            KeyValue::new("neg", -7_i64),
            KeyValue::new("client.address", "192.0.2.7"),
            KeyValue::new("v6", "2001:db8::1"),
            KeyValue::new("empty", ""),
        ];
        data.status = error.map_or(Status::Unset, |e| Status::error(e.to_string()));
        (fields, data)
    }

    const ATTRIBUTES: [(&str, Attr<'static>); 6] = [
        ("http.request.method", Attr::Str("GET")),
        ("server.port", Attr::Int(8086)),
        ("neg", Attr::Int(-7)),
        (
            "client.address",
            Attr::Ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7))),
        ),
        (
            "v6",
            Attr::Ip(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
            ))),
        ),
        ("empty", Attr::Str("")),
    ];

    #[test]
    fn spans_written_from_fields_decode_as_the_sdks_conversion_of_the_same_spans() {
        let cases = [
            both_ways(None, "", SpanKind::Server, ["GET", "write"], None),
            both_ways(
                Some((0x22, true)),
                "vendor=1,b=2",
                SpanKind::Server,
                ["HTTP", "query"],
                Some("504"),
            ),
            both_ways(
                Some((0x33, false)),
                "",
                SpanKind::Client,
                ["POST", ""],
                Some("timeout"),
            ),
            both_ways(Some((0, false)), "", SpanKind::Internal, ["", ""], None),
        ];
        let (_, resource) = assorted();
        let scope = InstrumentationScope::builder("gateway").build();
        let mut written = EncodedSpans::default();
        for (fields, _) in &cases {
            written.push(fields, &ATTRIBUTES);
        }
        assert_eq!(written.len(), cases.len());
        let mut out = Vec::new();
        Encoder::default().scope_request(&written, &scope, &resource, &mut out);
        let ours = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        let data: Vec<SpanData> = cases.into_iter().map(|(_, d)| d).collect();
        assert_eq!(ours, reference(data, &resource));
        written.clear();
        assert!(written.is_empty());
        Encoder::default().scope_request(&written, &scope, &resource, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn buffers_reused_across_batches_carry_nothing_over() {
        let (spans, resource) = assorted();
        let mut encoder = Encoder::default();
        let mut out = Vec::new();
        encoder.request(&spans, &resource, &mut out);
        encoder.request(&spans[..1], &resource, &mut out);
        let decoded = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        assert_eq!(decoded, reference(spans[..1].to_vec(), &resource));
    }
}
