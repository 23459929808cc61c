# frozen_string_literal: true

require 'openssl'
require 'tmpdir'
require 'h1p'

RSpec.describe Polyphony::TLS do
  let(:listener) { TCPServer.new('127.0.0.1', 0) }
  let(:port) { listener.addr[1] }

  after { listener.close unless listener.closed? }

  def self_signed(*names)
    Polyphony::TLS.self_signed(names)
  end

  def context(*certs, alpn: ['http/1.1'], fallback: false)
    ctx = Polyphony::TLS::ServerContext.new(alpn)
    certs.each { |cert, key| ctx.add_certificate(cert, key, fallback) }
    ctx
  end

  # Serves one TLS connection at a time with the block; failed handshakes are collected.
  def serve(ctx, failures = [])
    server = Polyphony::TLS::Server.new(listener, ctx)
    spin do
      loop do
        conn = server.accept
        spin do
          yield conn
        ensure
          conn.close
        end
      rescue Polyphony::TLS::Error => e
        failures << e
      end
    end
  end

  def echo(conn)
    conn.read_loop { |data| conn.write(data.upcase) }
  end

  it 'carries data both ways, in pieces large and small, and ends with close_notify' do
    cert = self_signed('localhost')
    acceptor = serve(context(cert)) { |conn| echo(conn) }
    client = Polyphony::TLS.connect('127.0.0.1', port, ca: cert.first, server_name: 'localhost')
    client << 'hello'
    expect(client.readpartial(100)).to eq('HELLO')
    big = 'x' * 300_000
    reader = spin { client.read(300_000) }
    client.write(big)
    expect(reader.await).to eq('X' * 300_000)
    expect(client.protocol_version).to eq('TLSv1_3')
    client.close
  ensure
    acceptor&.stop
  end

  it 'serves stock OpenSSL clients, many at once, each on its own fiber' do
    cert = self_signed('localhost')
    acceptor = serve(context(cert)) { |conn| echo(conn) }
    store = OpenSSL::X509::Store.new
    store.add_cert(OpenSSL::X509::Certificate.new(cert.first))
    clients = 20.times.map do |i|
      spin do
        ctx = OpenSSL::SSL::SSLContext.new
        ctx.cert_store = store
        ctx.verify_mode = OpenSSL::SSL::VERIFY_PEER
        ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), ctx)
        ssl.hostname = 'localhost'
        ssl.sync_close = true
        ssl.connect
        ssl.write("client #{i}\n")
        line = ssl.gets
        ssl.close
        line
      end
    end
    expect(Fiber.await(*clients)).to eq(20.times.map { |i| "CLIENT #{i}\n" })
  ensure
    acceptor&.stop
  end

  it 'feeds H1P straight from the session, with no readpartial call' do
    cert = self_signed('localhost')
    heads = []
    acceptor = serve(context(cert)) do |conn|
      def conn.readpartial(*) = raise('not called on the fast path')
      parser = H1P::Parser.new(conn)
      while (head = parser.parse_headers)
        heads << [head[':path'], parser.read_body]
        conn.write("ok\n")
      end
    end
    client = Polyphony::TLS.connect('127.0.0.1', port, ca: cert.first, server_name: 'localhost')
    client << "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" << "GET /b HTTP/1.1\r\n\r\n"
    expect(client.gets).to eq("ok\n")
    expect(client.gets).to eq("ok\n")
    client.close
    sleep 0.05
    expect(heads).to eq([['/a', 'abc'], ['/b', nil]])
  ensure
    acceptor&.stop
  end

  it 'lets ALPN pick the protocol: the server preference among what the client offers' do
    cert = self_signed('localhost')
    seen = []
    acceptor = serve(context(cert, alpn: %w[h2 http/1.1])) { |conn| seen << conn.alpn_protocol; conn.read(1) }
    [%w[http/1.1 h2], %w[http/1.1], []].each do |offer|
      client = Polyphony::TLS.connect('127.0.0.1', port, ca: cert.first, server_name: 'localhost', alpn: offer)
      seen << client.alpn_protocol
      client.close
    end
    sleep 0.05
    expect(seen.each_slice(2).map(&:sort)).to eq([%w[h2 h2], %w[http/1.1 http/1.1], [nil, nil]])
  ensure
    acceptor&.stop
  end

  it 'picks the certificate by SNI and refuses names it has none for' do
    a = self_signed('a.test')
    b = self_signed('*.b.test')
    failures = []
    acceptor = serve(context(a, b), failures) { |conn| conn.write(conn.server_name) }
    expect(Polyphony::TLS.connect('127.0.0.1', port, ca: a.first, server_name: 'a.test').read).to eq('a.test')
    expect(Polyphony::TLS.connect('127.0.0.1', port, ca: b.first, server_name: 'www.b.test').read).to eq('www.b.test')
    expect { Polyphony::TLS.connect('127.0.0.1', port, ca: a.first, server_name: 'c.test') }
      .to raise_error(Polyphony::TLS::HandshakeError)
    sleep 0.05
    expect(failures.map(&:class)).to eq([Polyphony::TLS::UnknownServerName])
    expect(failures.first.message).to eq('TLS handshake failed: no certificate for "c.test"')
  ensure
    acceptor&.stop
  end

  it 'serves a replaced certificate from the next handshake on, with no restart' do
    old = self_signed('swap.test')
    new = self_signed('swap.test')
    ctx = context(old)
    acceptor = serve(ctx) { |conn| conn.write('ok') }
    expect(Polyphony::TLS.connect('127.0.0.1', port, ca: old.first, server_name: 'swap.test').read).to eq('ok')
    ctx.add_certificate(*new, false)
    expect(Polyphony::TLS.connect('127.0.0.1', port, ca: new.first, server_name: 'swap.test').read).to eq('ok')
    expect { Polyphony::TLS.connect('127.0.0.1', port, ca: old.first, server_name: 'swap.test') }
      .to raise_error(Polyphony::TLS::HandshakeError, /certificate/i)
  ensure
    acceptor&.stop
  end

  it 'closes a connection that sends no client hello, with an error to log, and serves on' do
    cert = self_signed('localhost')
    failures = []
    acceptor = serve(context(cert), failures) { |conn| conn.write('ok') }
    plain = TCPSocket.new('127.0.0.1', port)
    plain.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    expect(plain.read).to start_with("HTTP/1.1 400 Bad Request\r\n") # a plain HTTP answer, then the end
    plain.close
    garbage = TCPSocket.new('127.0.0.1', port)
    garbage.write("\x16\x03\x01\x00\x05hello")
    expect(garbage.read.bytesize).to be < 10 # an alert at most, then the end
    garbage.close
    expect(failures.map(&:class)).to eq([Polyphony::TLS::HandshakeError] * 2)
    expect(failures.map(&:message)).to all(start_with('TLS handshake failed:'))
    expect(Polyphony::TLS.connect('127.0.0.1', port, ca: cert.first, server_name: 'localhost').read).to eq('ok')
  ensure
    acceptor&.stop
  end

  it 'gives up on a client that does not finish its handshake in time' do
    cert = self_signed('localhost')
    ctx = context(cert)
    silent = TCPSocket.new('127.0.0.1', port)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { Polyphony::TLS.accept(listener.poly_accept, ctx, timeout: 0.2) }
      .to raise_error(Polyphony::TLS::HandshakeError, /no handshake within 0.2 s/)
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be_between(0.15, 2)
    expect(silent.read).to eq('')
    silent.close
  end

  it 'says which certificate file is wrong and why' do
    Dir.mktmpdir do |dir|
      cert, key = self_signed('localhost')
      _, other_key = self_signed('localhost')
      File.write("#{dir}/cert.pem", cert)
      File.write("#{dir}/key.pem", other_key)
      File.write("#{dir}/good.pem", key)
      expect { Polyphony::TLS::ServerContext.load("#{dir}/cert.pem", "#{dir}/key.pem") }
        .to raise_error(Polyphony::TLS::CertificateError,
                        "#{dir}/cert.pem, #{dir}/key.pem: bad certificate: the private key does not belong to the certificate")
      expect { Polyphony::TLS::ServerContext.load("#{dir}/none.pem", "#{dir}/key.pem") }
        .to raise_error(Polyphony::TLS::CertificateError, /cannot read the certificate file: No such file/)
      expect { Polyphony::TLS::ServerContext.load("#{dir}/key.pem", "#{dir}/good.pem") }
        .to raise_error(Polyphony::TLS::CertificateError, /no CERTIFICATE block/)
      expect(Polyphony::TLS::ServerContext.load("#{dir}/cert.pem", "#{dir}/good.pem")).to be_a(Polyphony::TLS::ServerContext)
    end
  end
end
