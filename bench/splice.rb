# frozen_string_literal: true

# Serving a file over a socket: splice(2) through the backend (file -> pipe -> socket, no
# copy through Ruby) against a read/write loop through Ruby Strings, same run, same file.
# A client in another process reads and discards; MB/s is measured there (the client, which
# copies every byte into Ruby, is often the bottleneck), and the server's CPU time is measured
# here: what splice saves.
#
# Usage: ruby bench/splice.rb [size_in_MiB]   (default 1024; the file is sparse, in /tmp)
require_relative '../lib/polyphony'
require 'socket'
require 'tmpdir'

SIZE = (ARGV.first || 1024).to_i * 1024 * 1024

CLIENT = <<~RUBY
  require 'socket'
  socket = TCPSocket.new('127.0.0.1', ARGV[0].to_i)
  buffer = String.new(capacity: 1 << 20)
  total = 0
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  total += buffer.bytesize while socket.read(1 << 20, buffer)
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  puts [total, elapsed].join(' ')
RUBY

def serve(path, server)
  client = IO.popen([RbConfig.ruby, '-e', CLIENT, server.addr[1].to_s])
  conn = server.poly_accept
  cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  File.open(path) { |file| yield file, conn }
  cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu
  conn.close
  total, elapsed = client.read.split.map(&:to_f)
  client.close
  raise "client got #{total} bytes, not #{SIZE}" unless total.to_i == SIZE

  [total / elapsed / 1e6, cpu]
end

Dir.mktmpdir do |dir|
  path = File.join(dir, 'big')
  File.open(path, 'w') { |f| f.truncate(SIZE) }
  server = TCPServer.new('127.0.0.1', 0)
  spliced, spliced_cpu = serve(path, server) { |file, conn| IO.double_splice(file, conn) }
  copied, copied_cpu = serve(path, server) do |file, conn|
    buffer = String.new(capacity: 1 << 16)
    conn.poly_write(buffer) while file.read(1 << 16, buffer)
  end
  puts "#{SIZE / (1 << 20)} MiB file to a socket (#{Polyphony.backend_kind}):"
  puts format('  splice (file -> pipe -> socket)  %8.0f MB/s, server CPU %.2f s', spliced, spliced_cpu)
  puts format('  read/write loop through Ruby     %8.0f MB/s, server CPU %.2f s', copied, copied_cpu)
  puts format('  splice: %.2fx the throughput at %.2fx the CPU', spliced / copied, spliced_cpu / copied_cpu)
end
