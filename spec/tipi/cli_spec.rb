# frozen_string_literal: true

require 'socket'
require 'tmpdir'

# The `tipi` command's options: bind URLs, --config, -e, --pid, --check.
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
