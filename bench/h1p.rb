# frozen_string_literal: true

# H1P::Parser against http_parser.rb (Debian's ruby-http-parser.rb), in the same run: the
# typical 467-byte browser GET with 8 headers (bench/request.bin) and a 73-byte GET
# (bench/request-small.bin), parsed in memory and read from a pipe (on a plain thread, and on
# Polyphony's thread, where H1P reads the pipe through io_uring). Both parsers produce the
# same: a headers Hash plus the method and the path. Prints ns/request and objects allocated
# per request, and the ratio. Each parser runs in a child process of its own, forked from the
# same parent. Goal: H1P at least 3x faster on the typical request.
#
# In memory, a third row is the floor: bench/h1p_floor.c (built here with mkmf) makes the same
# Hash through the same calls (a chunk from a block, then parse_headers and read_body) but
# parses nothing: it knows where each value lies. No parser that returns this Hash can beat
# it, so http_parser.rb's time over the floor's is the most any parser can be faster here.
#
# Usage: ruby bench/h1p.rb [requests]   (default 200,000)
require_relative '../lib/h1p'
require_relative '../lib/polyphony'
require 'http_parser'
require 'fileutils'
require 'rbconfig'
require 'tmpdir'

COUNT = (ARGV.first || 200_000).to_i

# A run of `count` requests after a warm-up of a tenth as many (caches filled, the heap grown).
def measure(count)
  yield [count / 10, 1].max
  GC.start
  objects = GC.stat(:total_allocated_objects)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  yield count
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  [elapsed * 1e9 / count, (GC.stat(:total_allocated_objects) - objects).fdiv(count)]
end

# One run in a child process of its own, forked from the same parent for each parser: neither
# runs in a heap the other has grown, or with the other's garbage to collect.
def isolated(count, &block)
  reader, writer = IO.pipe
  pid = fork do
    reader.close
    writer.write(Marshal.dump(measure(count, &block)))
    writer.close
    exit!(0)
  end
  writer.close
  result = Marshal.load(reader.read) # rubocop:disable Security/MarshalLoad
  Process.wait(pid)
  result
ensure
  reader&.close
end

# bench/h1p_floor.c built in a temporary directory and loaded; false (and why) when it cannot be.
def load_floor
  dir = Dir.mktmpdir('h1p_floor')
  File.write(File.join(dir, 'extconf.rb'), <<~RUBY)
    require 'mkmf'
    have_func('rb_hash_new_capa', 'ruby.h')
    create_makefile('h1p_floor')
  RUBY
  FileUtils.cp(File.join(__dir__, 'h1p_floor.c'), dir)
  log = File.join(dir, 'build.log')
  built = Dir.chdir(dir) do
    system(RbConfig.ruby, 'extconf.rb', out: log, err: log) && system('make', out: log, err: [log, 'a'])
  end
  return warn("floor not built (see #{log})") || false unless built

  require File.join(dir, 'h1p_floor')
  true
end

def floor_in_memory(raw, count)
  H1PFloor.prepare(raw, H1P::Parser.new { raw }.parse_headers) { raw }
  count.times do
    headers = H1PFloor.parse_headers
    headers[':method'] && headers[':path'] && H1PFloor.read_body
  end
end

# Each parser in the form its users write it.
def h1p_in_memory(raw, count)
  parser = H1P::Parser.new { raw }
  count.times do
    headers = parser.parse_headers
    headers[':method'] && headers[':path'] && parser.read_body
  end
end

def http_parser_in_memory(raw, count)
  parser = Http::Parser.new
  done = 0
  parser.on_headers_complete = proc do |headers|
    headers && parser.http_method && parser.request_url
    done += 1
  end
  count.times { parser << raw }
  raise 'http_parser.rb parsed too few' unless done == count
end

# The pipe is filled by a child process, so reading it is what is measured.
def with_pipe(raw, count)
  reader, writer = IO.pipe
  pid = fork do
    reader.close
    batch = raw * 64
    (count / 64).times { writer.write(batch) }
    writer.write(raw * (count % 64))
    writer.close
    exit!(0)
  end
  writer.close
  yield reader
ensure
  reader&.close
  Process.wait(pid) if pid
end

def h1p_pipe(raw, count)
  with_pipe(raw, count) do |io|
    parser = H1P::Parser.new(io)
    n = 0
    while (headers = parser.parse_headers)
      headers[':method'] && headers[':path'] && parser.read_body
      n += 1
    end
    raise 'H1P parsed too few' unless n == count
  end
end

def http_parser_pipe(raw, count)
  with_pipe(raw, count) do |io|
    parser = Http::Parser.new
    n = 0
    parser.on_headers_complete = proc do |headers|
      headers && parser.http_method && parser.request_url
      n += 1
    end
    buffer = String.new(capacity: 16_384)
    parser << buffer while io.read(16_384, buffer)
    raise 'http_parser.rb parsed too few' unless n == count
  end
end

requests = {
  'typical 467-byte GET (8 headers)' => File.binread(File.join(__dir__, 'request.bin')),
  'small 73-byte GET' => File.binread(File.join(__dir__, 'request-small.bin'))
}
ROUNDS = 5

# The best of ROUNDS isolated runs of each parser, the parsers taking turns: a slow spell of
# this shared machine falls on all of them, not on one.
def best_in_turns(count, parsers)
  runs = Array.new(ROUNDS) { parsers.map { |parser| isolated(count, &parser) } }
  runs.transpose.map { |results| results.min_by(&:first) }
end

floor = load_floor
puts "#{COUNT} requests per run, best of #{ROUNDS} taking turns, each run in a process of its own " \
     "(#{RUBY_DESCRIPTION})"
requests.each do |label, raw|
  {
    'in memory' => %i[h1p_in_memory http_parser_in_memory],
    'over a pipe, plain thread' => [->(*a) { Thread.new { h1p_pipe(*a) }.join }, :http_parser_pipe],
    'over a pipe, Polyphony thread' => %i[h1p_pipe http_parser_pipe]
  }.each do |how, (ours, theirs)|
      run = ->(m, n) { m.is_a?(Proc) ? m.call(raw, n) : send(m, raw, n) }
      parsers = [ours, theirs].map { |m| ->(n) { run.call(m, n) } }
      parsers << ->(n) { floor_in_memory(raw, n) } if floor && how == 'in memory'
      (h1p_ns, h1p_objects), (peer_ns, peer_objects), (floor_ns, floor_objects) = best_in_turns(COUNT, parsers)
      puts "#{label}, #{how}:"
      puts format('  H1P             %8.0f ns/request %6.1f objects/request', h1p_ns, h1p_objects)
      puts format('  http_parser.rb  %8.0f ns/request %6.1f objects/request', peer_ns, peer_objects)
      puts format('  H1P is %.2fx faster', peer_ns / h1p_ns)
      next unless floor_ns

      puts format('  floor (no parse) %7.0f ns/request %6.1f objects/request', floor_ns, floor_objects)
      puts format('  http_parser.rb / floor: %.2fx, the most any parser making this Hash can be faster; ' \
                  'H1P takes %.2fx the floor', peer_ns / floor_ns, h1p_ns / floor_ns)
    end
end
