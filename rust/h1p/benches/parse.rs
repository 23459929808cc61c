//! Head parsing of the benchmark requests (bench/request.bin, 467 bytes and 8 headers, and
//! bench/request-small.bin, 73 bytes), and a chunked body; httparse parses the same heads in
//! the same run. Goal: ≤ 120 ns for the 467 bytes, what httparse takes on a fast machine.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use h1p::{ChunkedDecoder, HeadParser, Limits, Mode};

const TYPICAL: &[u8] = include_bytes!("../../../bench/request.bin");
const SMALL: &[u8] = include_bytes!("../../../bench/request-small.bin");

fn heads(c: &mut Criterion) {
    let mut group = c.benchmark_group("head");
    for (name, raw) in [("typical_467", TYPICAL), ("small_73", SMALL)] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        let mut parser = HeadParser::new(Mode::Server, Limits::default());
        group.bench_function(name, |b| {
            b.iter(|| {
                parser.reset();
                let head = parser.parse(black_box(raw)).unwrap().unwrap();
                black_box(head.fields.len())
            })
        });
    }
    group.finish();

    // The peer, measured in the same run: httparse (SIMD, no limits beyond its header array,
    // names left as sent, no framing checks).
    let mut group = c.benchmark_group("httparse");
    for (name, raw) in [("typical_467", TYPICAL), ("small_73", SMALL)] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut fields = [httparse::EMPTY_HEADER; 32];
                let mut request = httparse::Request::new(&mut fields);
                let status = request.parse(black_box(raw)).unwrap();
                black_box((status.is_complete(), request.headers.len()))
            })
        });
    }
    group.finish();
}

fn chunked(c: &mut Criterion) {
    let body: Vec<u8> = (0..64)
        .flat_map(|_| {
            b"400\r\n"
                .iter()
                .copied()
                .chain([b'x'; 1024])
                .chain(*b"\r\n")
        })
        .chain(*b"0\r\n\r\n")
        .collect();
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("64_chunks_of_1k", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new(Limits::default());
            let (mut pos, mut data) = (0, 0);
            loop {
                let step = decoder.decode(&body[pos..]).unwrap();
                data += step.data.map_or(0, |r| r.len());
                pos += step.consumed;
                if step.done {
                    break black_box(data);
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
