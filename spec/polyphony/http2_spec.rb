# frozen_string_literal: true

# Polyphony::HTTP2::Server: HTTP/2 fed with a socket's bytes, here over plain TCP (h2c with prior
# knowledge), talked to by curl. Requests come as Rack envs built on a base Hash; answers take
# Rack's status and headers.
RSpec.describe Polyphony::HTTP2::Server do
  let(:listener) { TCPServer.new('127.0.0.1', 0) }
  let(:port) { listener.addr[1] }

  after { listener.close unless listener.closed? }

  # Answers each request with its method, path and body size; the socket's bytes in, h2's out.
  def serve(conn)
    h2 = Polyphony::HTTP2::Server.new(100, 65_536, false)
    requests = {}
    conn.read_loop do |data|
      h2.receive(data)
      while (event = h2.next_event({ 'SERVER_PROTOCOL' => 'HTTP/2' }, []))
        case event
        in [:request, id, env, end_stream]
          path = env['QUERY_STRING'].empty? ? env['PATH_INFO'] : "#{env['PATH_INFO']}?#{env['QUERY_STRING']}"
          requests[id] = [env['REQUEST_METHOD'], path, +'']
          answer(h2, id, requests.delete(id)) if end_stream
        in [:data, id, bytes, end_stream]
          requests[id][2] << bytes
          answer(h2, id, requests.delete(id)) if end_stream
        in [:reset, id]
          requests.delete(id)
        end
      end
      out = h2.outgoing
      conn.write(out) unless out.empty?
    end
  ensure
    conn.close
  end

  def answer(h2, id, (method, path, body))
    # Connection is HTTP/1's: dropped, as HTTP/2 requires.
    h2.respond_rack(id, 200, { 'Content-Type' => 'text/plain', 'Connection' => 'close' }, false)
    h2.send_data(id, "#{method} #{path} #{body.bytesize}\n", true)
  end

  def curl(*args)
    spin { IO.popen(['curl', '-sS', '--max-time', '5', '--http2-prior-knowledge', *args], &:read) }.await
  end

  it 'serves curl over h2c, bodies included' do
    acceptor = spin { listener.accept_loop { |conn| spin { serve(conn) } } }
    expect(curl('-w', ' %{http_version}', "http://127.0.0.1:#{port}/hello?x=1")).to eq("GET /hello?x=1 0\n 2")
    expect(curl('--data-binary', 'x' * 100_000, "http://127.0.0.1:#{port}/upload")).to eq("POST /upload 100000\n")
  ensure
    acceptor&.stop
  end

  it 'says what is wrong with a connection that is not HTTP/2' do
    h2 = Polyphony::HTTP2::Server.new(100, 65_536, false)
    expect { h2.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }
      .to raise_error(Polyphony::HTTP2::Error, /no HTTP\/2 connection preface/)
    expect(h2).to be_closed
  end
end
