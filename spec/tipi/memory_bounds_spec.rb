# frozen_string_literal: true

require 'etc'
require 'json'
require 'socket'

# One client cannot grow a worker's memory without bound, over HTTP/2 or a WebSocket: raw-frame
# clients (spec/support/h2_flood.py, on Debian's python3-h2) that never open their windows,
# upload to an app that does not read, flood control frames, or send malformed requests; and
# WebSocket peers that do not read, or send faster than the app reads. Each case watches the
# server's resident memory (VmRSS) while it runs.
RSpec.describe 'tipi: memory per connection stays bounded' do
  H2_FLOOD = File.join(ROOT, 'spec', 'support', 'h2_flood.py')

  def flood(*args)
    out, err, status = run_command('/usr/bin/python3', H2_FLOOD, *args.map(&:to_s), limit: 60)
    raise "h2_flood.py #{args.join(' ')} failed:\n#{err}" unless status.success?

    JSON.parse(out)
  end

  def rss(tipi)
    File.read("/proc/#{tipi.pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i # KiB
  end

  # Runs the block while sampling the server's RSS; returns [block's value, growth in KiB from
  # before to the peak].
  def peak_growth(tipi)
    before = rss(tipi)
    peak = before
    sampler = Thread.new do
      loop do
        peak = [peak, rss(tipi)].max
        Kernel.sleep 0.02
      end
    end
    value = yield
    peak = [peak, rss(tipi)].max
    [value, peak - before]
  ensure
    sampler&.kill
  end

  # The server's live heap slots after a full GC (the app's /gc).
  def live_slots(tipi)
    out, = run_command('curl', '-sS', '--max-time', '10', '--http2-prior-knowledge', "http://127.0.0.1:#{tipi.port}/gc")
    out.split.first.to_i
  end

  def h2c_pid(tipi)
    out, = run_command('curl', '-sS', '--max-time', '10', '--http2-prior-knowledge', "http://127.0.0.1:#{tipi.port}/pid")
    out
  end

  describe 'HTTP/2' do
    before(:all) do
      @tipi = TipiProcess.new('-l', '127.0.0.1:0', '--max-body', '1000000', TIPI_APP)
      # The first stream that waits for its window costs a fresh server about 11 MB once (the
      # heap the paths it runs first need); measured from there, what a client can add shows.
      flood('stalled', @tipi.port, '/stream', 1, 0.5)
    end

    after(:all) do
      @tipi.stop
    end

    it 'pulls a streamed response no faster than the windows let it out' do
      # Four 100 MB responses to a client whose stream windows stay at 0 (the old code queued
      # them whole: +400 MB).
      result, growth = peak_growth(@tipi) { flood('stalled', @tipi.port, '/huge', 4, 3) }
      expect(result['statuses']).to eq('1' => 200, '3' => 200, '5' => 200, '7' => 200)
      expect(result['data']).to eq({})
      expect(growth).to be < 20_000
      expect(h2c_pid(@tipi)).to eq(@tipi.pid.to_s)
    end

    it 'spends no CPU on streams that wait for their window' do
      # (A stream waiting for its window asked for a flush, and the flush woke it again: one
      # core at full speed for as long as the client held its windows shut, 3.0 s of CPU in
      # these 3 s, and a timer armed each turn.)
      cpu_ms = lambda do
        fields = File.read("/proc/#{@tipi.pid}/stat").split(') ').last.split
        (fields[11].to_i + fields[12].to_i) * 1000 / Etc.sysconf(Etc::SC_CLK_TCK)
      end
      before = cpu_ms.call
      result = flood('stalled', @tipi.port, '/huge', 2, 3)
      expect(result['statuses']).to eq('1' => 200, '3' => 200)
      expect(cpu_ms.call - before).to be < 600
    end

    it 'gives a stream up when its window stays shut for the timeout, PINGs or not' do
      tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', '--timeout', '1', TIPI_APP)
      # Silent, then sending a PING every 0.2 s: each woke the stream, which started its
      # timeout over (the old code never reset it while the PINGs came).
      [[], [0.2]].each do |ping|
        result = flood('stalled', tipi.port, '/huge', 1, 3.5, *ping)
        expect(result['statuses']).to eq('1' => 200)
        expect(result['resets'].keys).to eq(['1']), "pings #{ping.inspect}: #{result.inspect}"
      end
    ensure
      tipi&.stop
    end

    it 'takes no more of an upload than the window while the app does not read it' do
      result, growth = peak_growth(@tipi) { flood('upload', @tipi.port, '/unread', 200_000_000, 5) }
      expect(result['statuses']).to eq('1' => 200)
      expect(result['sent']).to be <= 1 << 20 # the stream's window: nothing read, nothing released
      expect(growth).to be < 20_000
      # What such uploads leave is garbage: after a GC the heap holds what it held before.
      live = live_slots(@tipi)
      2.times { flood('upload', @tipi.port, '/unread', 200_000_000, 4) }
      expect(live_slots(@tipi)).to be_within(live / 50).of(live)
    end

    it 'answers 413 to a declared content-length over --max-body, and resets the upload' do
      result = flood('upload', @tipi.port, '/upload', 200_000_000, 5, 200_000_000)
      expect(result).to include('statuses' => { '1' => 413 }, 'resets' => { '1' => 'NO_ERROR' })
      expect(result['sent']).to be <= 1 << 20 # (what the window let go before the 413 came)
      expect(@tipi.read_until(%r{413 for /upload: content-length 200000000})).to start_with('tipi: 127.0.0.1')
    end

    it 'answers 413 to more body than --max-body allows, and resets the upload' do
      result = flood('upload', @tipi.port, '/upload', 3_000_000, 5)
      expect(result).to include('statuses' => { '1' => 413 }, 'resets' => { '1' => 'NO_ERROR' })
      expect(result['sent']).to be < 2_500_000
    end

    it 'answers PING and SETTINGS floods with GOAWAY ENHANCE_YOUR_CALM, five in a row, memory flat' do
      results, growth = peak_growth(@tipi) do
        5.times.flat_map { [flood('ping', @tipi.port, 3_000_000), flood('settings', @tipi.port, 4_000_000)] }
      end
      results.each do |result|
        # The GOAWAY, or (when h2 ended the connection first, or the client read too late) the
        # end of the connection: either way far fewer acknowledgements than frames sent.
        expect(result['goaway']).to eq('ENHANCE_YOUR_CALM').or be_nil
        expect(result['received']).to be < 1 << 20
      end
      expect(results.count { |result| result['goaway'] == 'ENHANCE_YOUR_CALM' }).to be >= 5
      expect(growth).to be < 15_000
      expect(@tipi.read_until(/PING\/SETTINGS flood: GOAWAY ENHANCE_YOUR_CALM/)).to include('127.0.0.1')
      expect(h2c_pid(@tipi)).to eq(@tipi.pid.to_s)
    end

    it 'resets a request without :path, or with a field value padded with spaces (RFC 9113 8.1.1, 8.2.1)' do
      %w[nopath spaces].each do |kind|
        expect(flood('frame', @tipi.port, kind)).to include('resets' => { '1' => 'PROTOCOL_ERROR' },
                                                            'statuses' => { '3' => 200 }, 'goaway' => nil)
      end
    end

    it "drops :path from a request's trailers (the h2 crate does; docs/tipi.md says so)" do
      expect(flood('frame', @tipi.port, 'trailerpath')).to include('statuses' => { '1' => 200, '3' => 200 },
                                                                    'resets' => {})
    end
  end

  describe 'WebSocket' do
    before(:all) do
      @tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'websocket.rb'))
    end

    after(:all) do
      @tipi.stop
    end

    def websocket(path)
      socket = TCPSocket.new('127.0.0.1', @tipi.port)
      socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
      expect(socket.gets("\r\n\r\n")).to start_with('HTTP/1.1 101')
      socket
    end

    it 'sends no faster than a peer that does not read takes (HTTP/1.1)' do
      socket = websocket('/firehose')
      _, growth = peak_growth(@tipi) { Kernel.sleep 3 }
      expect(growth).to be < 20_000
    ensure
      socket&.close
    end

    it 'reads no faster than the app takes messages from a peer that floods it (HTTP/1.1)' do
      socket = websocket('/sip')
      message = 'f'.b * (64 << 10)
      # A masked binary frame with a zero mask: the payload goes as it is.
      frame = [0x82, 0x80 | 127].pack('C2') + [message.bytesize].pack('Q>') + "\0\0\0\0" + message
      sent = 0
      _, growth = peak_growth(@tipi) do
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 3
        pending = frame
        while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
          written = socket.write_nonblock(pending, exception: false)
          next IO.select(nil, [socket], nil, 0.1) if written == :wait_writable

          sent += written
          pending = pending.byteslice(written..)
          pending = frame if pending.empty?
        end
      end
      # The app took about 60 messages (4 MB) in the 3 s; the kernel's buffers hold a few MB
      # more. Read without bound, loopback carries gigabytes in that time.
      expect(sent).to be < 30 << 20
      expect(growth).to be < 20_000
    ensure
      socket&.close
    end

    it 'sends no faster than a peer whose HTTP/2 stream window stays closed takes' do
      # A server of its own: the others' last messages may still be read and dropped meanwhile.
      tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'websocket.rb'))
      flood('wsstalled', tipi.port, '/firehose', 0.5) # (warm-up, as above)
      result, growth = peak_growth(tipi) { flood('wsstalled', tipi.port, '/firehose', 3) }
      expect(result['statuses']).to eq('1' => 200)
      expect(growth).to be < 20_000 # (the old code queued 3 GB in 4 s)
    ensure
      tipi&.stop
    end
  end
end
