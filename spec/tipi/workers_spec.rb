# frozen_string_literal: true

require 'socket'
require 'tmpdir'
require 'h1p'

# Workers, signals and graceful restarts of the real `tipi` command.
RSpec.describe 'tipi workers and signals' do
  def get(port, path, keep_alive: false)
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\n#{'Connection: close' unless keep_alive}\r\n\r\n")
    parser = H1P::Parser.new(socket, :client)
    [parser.parse_headers[':status'], parser.read_body].tap { socket.close }
  end

  def alive?(pid)
    Process.kill(0, pid)
  rescue Errno::ESRCH
    false
  end

  def app_file(dir, version)
    File.join(dir, 'config.ru').tap do |path|
      File.write(path, <<~RUBY)
        run lambda { |env|
          sleep 0.002 # requests are in flight when signals come
          body = env['PATH_INFO'] == '/pid' ? Process.pid.to_s : '#{version}'
          [200, { 'Content-Type' => 'text/plain', 'Content-Length' => body.bytesize.to_s }, [body]]
        }
      RUBY
    end
  end

  # Clients that request in a loop until stopped: new connections, and keep-alive ones that
  # reconnect (and retry) only when the server closed a reused connection before answering,
  # as HTTP clients do (RFC 9112, 9.3.1). Anything else counts as a failure.
  class Load # rubocop:disable Lint/ConstantDefinitionInBlock
    attr_reader :failures, :bodies

    def initialize(port, threads: 4)
      @port = port
      @failures = []
      @bodies = Hash.new(0)
      @running = true
      @threads = Array.new(threads) { |i| Thread.new { i.even? ? fresh_connections : keep_alive } }
    end

    def stop
      @running = false
      @threads.each(&:join)
      self
    end

    def count
      @bodies.values.sum
    end

    private

    def record(status, body)
      status == 200 ? @bodies[body] += 1 : @failures << "status #{status}"
    end

    def fresh_connections
      fresh_request while @running
    end

    def fresh_request
      socket = TCPSocket.new('127.0.0.1', @port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      parser = H1P::Parser.new(socket, :client)
      head = parser.parse_headers or raise 'closed without a response'
      record(head[':status'], parser.read_body)
    rescue StandardError => e
      @failures << "#{e.class}: #{e.message}"
    ensure
      socket&.close
    end

    def keep_alive
      conn = {}
      keep_alive_request(conn) while @running
      conn[:socket]&.close
    end

    def keep_alive_request(conn)
      fresh = conn[:socket].nil?
      if fresh
        conn[:socket] = TCPSocket.new('127.0.0.1', @port)
        conn[:parser] = H1P::Parser.new(conn[:socket], :client)
      end
      head = begin
        conn[:socket].write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn[:parser].parse_headers
      rescue Errno::ECONNRESET, Errno::EPIPE
        nil
      end
      return record(head[':status'], conn[:parser].read_body) if head

      @failures << 'a new connection closed without a response' if fresh
      conn.delete(:socket).close
    rescue StandardError => e
      @failures << "#{e.class}: #{e.message}"
      conn.delete(:socket)
    end
  end

  it 'runs N workers on one port, replaces one killed with SIGKILL, and stops gracefully on SIGTERM' do
    tipi = TipiProcess.new('-q', '-w', '2', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru'))
    port = tipi.port
    workers = tipi.workers
    expect(workers.size).to eq(2)
    served_by = Array.new(20) { get(port, '/pid').last.to_i }.uniq
    expect(served_by - workers).to be_empty

    Process.kill('KILL', workers.first)
    expect(tipi.read_until(/exited/)).to include("worker 1 (pid #{workers.first}) exited")
    replacement = tipi.read_until(/worker 1: pid/)[/pid (\d+)/, 1].to_i
    expect(replacement).not_to eq(workers.first)
    expect(Array.new(10) { get(port, '/pid').first }).to all(eq(200))

    # A request in flight when SIGTERM comes still gets its answer.
    slow = Thread.new { get(port, '/slow') }
    sleep 0.15
    status = tipi.stop
    expect(slow.value).to eq([200, 'slow'])
    expect(status.success?).to be(true)
    expect { TCPSocket.new('127.0.0.1', port) }.to raise_error(Errno::ECONNREFUSED)
  end

  it 'shares keep-alive connections out evenly between workers' do
    tipi = TipiProcess.new('-q', '-w', '2', '-l', '127.0.0.1:0', TIPI_APP)
    # Twenty connections opened one after the other and held, each asking which worker serves it.
    sockets = []
    pids = Array.new(20) do
      socket = TCPSocket.new('127.0.0.1', tipi.port).tap { |s| sockets << s }
      socket.write("GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
      head = socket.gets("\r\n\r\n")
      socket.read(head[/Content-Length: (\d+)/, 1].to_i).to_i
    end
    expect(pids.tally.keys).to match_array(tipi.workers)
    expect(pids.tally.values).to all(be_between(7, 13)) # all 20 on one worker without the balancing
  ensure
    sockets&.each(&:close)
    tipi&.stop
  end

  it 'adds a worker on SIGTTIN and removes one on SIGTTOU' do
    tipi = TipiProcess.new('-q', '-w', '1', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru'))
    tipi.signal('TTIN')
    added = tipi.read_until(/worker 2: pid/)[/pid (\d+)/, 1].to_i
    # Which worker accepts is the kernel's choice: ask until the new one answers.
    expect(500.times.any? { get(tipi.port, '/pid').last.to_i == added }).to be(true)
    tipi.signal('TTOU')
    expect(tipi.read_until(/stopping, 1 left/)).to include("worker 2 (pid #{added})")
    deadline = monotonic + 5
    sleep 0.05 while alive?(added) && monotonic < deadline
    expect { Process.kill(0, added) }.to raise_error(Errno::ESRCH) # gone and reaped
    tipi.signal('TTOU')
    expect(tipi.read_until(/SIGTTOU ignored/)).to include('one worker is the fewest')
    expect(tipi.stop.success?).to be(true)
  end

  [['with 2 workers', %w[-w 2]], ['in one process', []]].each do |mode, options|
    it "restarts on SIGUSR2 #{mode} with new code, same pid, and no failed request under load" do
      Dir.mktmpdir do |dir|
        tipi = TipiProcess.new('-q', *options, '-l', '127.0.0.1:0', '--pid', File.join(dir, 'tipi.pid'),
                               app_file(dir, 'v1'))
        expect(File.read(File.join(dir, 'tipi.pid')).to_i).to eq(tipi.pid)
        old_workers = tipi.workers
        load = Load.new(tipi.port)
        sleep 0.5
        app_file(dir, 'v2')
        tipi.signal('USR2')
        tipi.read_until(/Use Ctrl-C to stop/)
        sleep 0.3 until load.bodies['v2'] >= 50
        sleep 0.3
        load.stop
        expect(load.failures).to be_empty
        expect(load.bodies.keys).to contain_exactly('v1', 'v2')
        expect(get(tipi.port, '/').last).to eq('v2')
        expect(File.read(File.join(dir, 'tipi.pid')).to_i).to eq(tipi.pid)
        old_workers.each { |pid| expect { Process.kill(0, pid) }.to raise_error(Errno::ESRCH) }
        expect(tipi.stop.success?).to be(true)
        expect(File.exist?(File.join(dir, 'tipi.pid'))).to be(false)
      end
    end
  end

  it 'refuses a SIGUSR2 restart whose new code does not load, and goes on serving' do
    Dir.mktmpdir do |dir|
      path = app_file(dir, 'v1')
      tipi = TipiProcess.new('-q', '-w', '1', '-l', '127.0.0.1:0', path)
      File.write(path, "raise 'broken app'\n")
      tipi.signal('USR2')
      expect(tipi.read_until(/restart refused/)).to include('the running code goes on')
      expect(tipi.lines.join).to include('broken app')
      expect(get(tipi.port, '/')).to eq([200, 'v1'])
      expect(tipi.stop.success?).to be(true)
    end
  end
end
