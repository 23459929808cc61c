# frozen_string_literal: true

require 'socket'
require 'tmpdir'

# The `tipi` command's options: bind URLs, -p and $PORT, --config, -e and $RACK_ENV, --pidfile,
# --check; and Tipi as a Rack handler (rackup -s tipi).
RSpec.describe 'tipi options' do
  let(:app) { File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru') }

  def get(socket, path)
    socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    socket.read.split("\r\n\r\n", 2).last.tap { socket.close }
  end

  it 'listens on every -b URL and -l address: TCP and Unix sockets; the socket file goes at exit' do
    Dir.mktmpdir do |dir|
      path = File.join(dir, 'tipi.sock')
      tipi = TipiProcess.new('-q', '-b', "unix://#{path}", '-l', '127.0.0.1:0', '-b', 'tcp://127.0.0.1:0', app)
      ports = tipi.lines.grep(%r{listening on http://127.0.0.1:}).map { |line| line[/:(\d+)$/, 1].to_i }
      expect(ports.size).to eq(2)
      expect(tipi.lines.join).to include("listening on unix://#{path}")
      ports.each { |port| expect(get(TCPSocket.new('127.0.0.1', port), '/rack-env')).to eq('development') }
      expect(get(UNIXSocket.new(path), '/x?y=1')).to include('"PATH_INFO":"/x"', '"SERVER_PORT":"80"',
                                                            '"REMOTE_ADDR":"127.0.0.1"')
      expect(tipi.stop.success?).to be(true)
      expect(File.exist?(path)).to be(false)
    end
  end

  it 'listens on IPv6 addresses, and says so in REMOTE_ADDR' do
    tipi = TipiProcess.new('-q', '-l', '[::1]:0', app)
    port = tipi.lines.grep(%r{listening on http://\[::1\]:}).first[/:(\d+)$/, 1].to_i
    expect(get(TCPSocket.new('::1', port), '/')).to include('"REMOTE_ADDR":"::1"')
  ensure
    tipi&.stop
  end

  it 'reads a Ruby --config file; the command line wins over it' do
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, 'tipi.rb'), <<~RUBY)
        port 0, '127.0.0.1'
        workers 2
        environment 'staging'
        pidfile '#{dir}/from-config.pid'
        rackup '#{app}'
        quiet
        on_worker_boot { |index| $stdout.write("booted worker \#{index}\\n") }
      RUBY
      tipi = TipiProcess.new('--config', File.join(dir, 'tipi.rb'), '-e', 'production')
      expect(tipi.workers.size).to eq(2)
      expect(tipi.lines.join).to include('environment: production')
      expect(tipi.lines_matching(/booted worker/, 2).sort).to eq(["booted worker 0\n", "booted worker 1\n"])
      expect(File.read(File.join(dir, 'from-config.pid')).to_i).to eq(tipi.pid)
      expect(get(TCPSocket.new('127.0.0.1', tipi.port), '/rack-env')).to eq('production')
      expect(tipi.stop.success?).to be(true)
    end
  end

  # A port nothing listens on now (the kernel's pick, released).
  def free_port
    server = TCPServer.new('127.0.0.1', 0)
    server.local_address.ip_port.tap { server.close }
  end

  it 'takes RACK_ENV from the environment unless -e is given, as Puma and rackup do' do
    tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', app, env: { 'RACK_ENV' => 'production' })
    expect(tipi.lines.join).to include('environment: production')
    expect(get(TCPSocket.new('127.0.0.1', tipi.port), '/rack-env')).to eq('production')
    tipi.stop
    tipi = TipiProcess.new('-q', '-e', 'staging', '-l', '127.0.0.1:0', app, env: { 'RACK_ENV' => 'production' })
    expect(get(TCPSocket.new('127.0.0.1', tipi.port), '/rack-env')).to eq('staging')
  ensure
    tipi&.stop
  end

  it 'listens on -p PORT, or on $PORT when no address is given, and writes --pidfile (--pid too)' do
    Dir.mktmpdir do |dir|
      port = free_port
      tipi = TipiProcess.new('-q', '-p', port.to_s, '--pidfile', File.join(dir, 'a.pid'), app)
      expect(tipi.lines.join).to include("listening on http://0.0.0.0:#{port}")
      expect(get(TCPSocket.new('127.0.0.1', port), '/rack-env')).to eq('development')
      expect(File.read(File.join(dir, 'a.pid')).to_i).to eq(tipi.pid)
      tipi.stop
      port = free_port
      tipi = TipiProcess.new('-q', '--pid', File.join(dir, 'b.pid'), app, env: { 'PORT' => port.to_s })
      expect(get(TCPSocket.new('127.0.0.1', port), '/rack-env')).to eq('development')
      expect(File.read(File.join(dir, 'b.pid')).to_i).to eq(tipi.pid)
    ensure
      tipi&.stop
    end
    _out, err, status = run_command({ 'PORT' => 'eighty' }, RbConfig.ruby, 'exe/tipi', app)
    expect(status).not_to be_success
    expect(err).to include('PORT must be a port number, not "eighty"')
  end

  it 'serves as a Rack handler: rackup -s tipi, and Rack::Handler.get for rails server -u tipi' do
    port = free_port
    env = { 'RUBYLIB' => File.join(ROOT, 'lib') }
    io = IO.popen(env, ['rackup', '-s', 'tipi', '-o', '127.0.0.1', '-p', port.to_s, app], err: %i[child out])
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
    until (line = io.gets)&.include?('Use Ctrl-C to stop')
      raise "rackup said no more than #{line.inspect}" if line.nil? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    end
    expect(get(TCPSocket.new('127.0.0.1', port), '/rack-env')).to eq('development')
    Process.kill('TERM', io.pid)
    Timeout.timeout(30) { Process.wait(io.pid) }
    expect($?.success?).to be(true)
    out, err, status = run_command(env, RbConfig.ruby, '-e', 'require "rack"; print Rack::Handler.get("tipi")')
    expect([out, status.success?]).to eq(['Rack::Handler::Tipi', true]), err
  ensure
    io&.close
  end

  it 'checks that an app loads with --check, and says why it does not' do
    out, _err, status = run_command(RbConfig.ruby, 'exe/tipi', '--check', app)
    expect(status).to be_success
    expect(out).to include('loads')
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, 'bad.ru'), "raise 'no database'\n")
      _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '--check', File.join(dir, 'bad.ru'))
      expect(status).not_to be_success
      expect(err).to include('no database')
    end
  end

  it 'refuses bad listen addresses, busy ports and bad config files with a clear message' do
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-b', 'udp://1.2.3.4:5', app)
    expect(status).not_to be_success
    expect(err).to include('bad listen address "udp://1.2.3.4:5"')
    busy = TCPServer.new('127.0.0.1', 0)
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-l', "127.0.0.1:#{busy.local_address.ip_port}", app)
    expect(status).not_to be_success
    expect(err).to include("cannot listen on tcp://127.0.0.1:#{busy.local_address.ip_port}")
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '--config', 'no/such/file.rb', app)
    expect(status).not_to be_success
    expect(err).to include('no such config file no/such/file.rb')
  ensure
    busy&.close
  end
end
