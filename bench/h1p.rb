# frozen_string_literal: true

# H1P::Parser against http_parser.rb (Debian's ruby-http-parser.rb), in the same run: the
# typical 467-byte browser GET with 8 headers (bench/request.bin) and a 73-byte GET
# (bench/request-small.bin), parsed in memory and read from a pipe (on a plain thread, and on
# Polyphony's thread, where H1P reads the pipe through io_uring). Both parsers produce the
# same: a headers Hash plus the method and the path. Prints ns/request and objects allocated
# per request, and the ratio. Each parser runs in a child process of its own, forked from the
# same parent. Goal: H1P at least 3x faster on the typical request.
#
# Usage: ruby bench/h1p.rb [requests]   (default 200,000)
require_relative '../lib/h1p'
require_relative '../lib/polyphony'
require 'http_parser'

COUNT = (ARGV.first || 200_000).to_i

def measure(count)
  GC.start
  objects = GC.stat(:total_allocated_objects)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  yield
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  [elapsed * 1e9 / count, (GC.stat(:total_allocated_objects) - objects).fdiv(count)]
end

def best_of(count, runs = 3, &block)
  Array.new(runs) { measure(count, &block) }.min_by(&:first)
end

# `best_of` in a child process of its own, forked from the same parent for each parser: neither
# runs in a heap the other has grown, or with the other's garbage to collect.
def isolated(count, &block)
  reader, writer = IO.pipe
  pid = fork do
    reader.close
    writer.write(Marshal.dump(best_of(count, &block)))
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
puts "#{COUNT} requests per run, best of 3, each parser in a process of its own (#{RUBY_DESCRIPTION})"
requests.each do |label, raw|
  {
    'in memory' => %i[h1p_in_memory http_parser_in_memory],
    'over a pipe, plain thread' => [->(*a) { Thread.new { h1p_pipe(*a) }.join }, :http_parser_pipe],
    'over a pipe, Polyphony thread' => %i[h1p_pipe http_parser_pipe]
  }.each do |how, (ours, theirs)|
      run = ->(m) { m.is_a?(Proc) ? m.call(raw, COUNT) : send(m, raw, COUNT) }
      h1p_ns, h1p_objects = isolated(COUNT) { run.call(ours) }
      peer_ns, peer_objects = isolated(COUNT) { run.call(theirs) }
      puts "#{label}, #{how}:"
      puts format('  H1P             %8.0f ns/request %6.1f objects/request', h1p_ns, h1p_objects)
      puts format('  http_parser.rb  %8.0f ns/request %6.1f objects/request', peer_ns, peer_objects)
      puts format('  H1P is %.2fx faster', peer_ns / h1p_ns)
    end
end
