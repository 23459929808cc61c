# frozen_string_literal: true

require 'socket'
require 'tmpdir'

# Debian's redis-server on a free loopback port, persistence off, for the specs of the ACME
# store a fleet shares.
class RedisServer
  attr_reader :port

  def initialize
    @dir = Dir.mktmpdir('redis')
    @port = TCPServer.new('127.0.0.1', 0).then { |s| s.addr[1].tap { s.close } }
    @pid = spawn('redis-server', '--port', @port.to_s, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
                 '--dir', @dir, out: File::NULL, err: File::NULL)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    begin
      TCPSocket.new('127.0.0.1', @port).close
    rescue Errno::ECONNREFUSED
      raise 'redis-server did not start' if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
      retry
    end
  end

  def url(db = 0)
    "redis://127.0.0.1:#{@port}/#{db}"
  end

  def stop
    Process.kill('TERM', @pid)
    Process.wait(@pid)
    FileUtils.rm_rf(@dir)
  end
end
