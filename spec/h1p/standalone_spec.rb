# frozen_string_literal: true

# `require 'h1p'` needs no event loop: these run in a child Ruby that never loads Polyphony.
RSpec.describe 'H1P without Polyphony' do
  it 'serves a thread-per-connection server, keep-alive and pipelined' do
    out, err, status = run_ruby(<<~RUBY)
      require 'h1p'
      require 'socket'
      abort 'polyphony loaded' if defined?(Polyphony::FiberAPI)
      server = TCPServer.new('127.0.0.1', 0)
      Thread.new do
        loop do
          Thread.new(server.accept) do |conn|
            parser = H1P::Parser.new(conn)
            while (headers = parser.parse_headers)
              body = parser.read_body
              H1P.send_response(conn, { 'Content-Type' => 'text/plain' }, "\#{headers[':path']} \#{body.inspect}")
            end
            conn.close
          end
        end
      end
      client = TCPSocket.new('127.0.0.1', server.addr[1])
      client << "GET /a HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nPOST /b HTTP/1.1\\r\\nContent-Length: 2\\r\\n\\r\\nhi"
      client.close_write
      responses = H1P::Parser.new(client, :client)
      while (headers = responses.parse_headers)
        puts "\#{headers[':status']} \#{responses.read_body}"
      end
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq("200 /a nil\n200 /b \"hi\"\n")
  end

  it "works under Ruby's Fiber scheduler (Async): parsing yields to other fibers" do
    out, err, status = run_ruby(<<~RUBY)
      require 'h1p'
      require 'async'
      require 'socket'
      Async do |task|
        server = TCPServer.new('127.0.0.1', 0)
        task.async do
          2.times do
            conn = server.accept
            task.async do
              parser = H1P::Parser.new(conn)
              while (headers = parser.parse_headers)
                H1P.send_response(conn, {}, headers[':path'])
              end
              conn.close
            end
          end
        end
        # Two slow clients at once: each sends its request in two halves.
        clients = 2.times.map do |i|
          task.async do
            socket = TCPSocket.new('127.0.0.1', server.addr[1])
            socket << "GET /client\#{i} HTTP/1.1\\r\\n"
            sleep 0.1
            socket << "\\r\\n"
            socket.close_write
            parser = H1P::Parser.new(socket, :client)
            parser.parse_headers
            parser.read_body
          end
        end
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        puts clients.map(&:wait).join(' ')
        puts Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 0.19
      end
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq("/client0 /client1\ntrue\n")
  end
end

RSpec.describe "require 'h1p'" do
  it 'defines H1P and nothing else: no other constant, no method on Object or a core class' do
    out, err, status = run_ruby(<<~RUBY)
      require 'stringio'
      def snapshot
        [Object.constants.sort, Object.private_instance_methods.sort, Object.instance_methods.sort,
         Kernel.private_instance_methods.sort, IO.instance_methods.sort, Fiber.instance_methods.sort,
         Thread.instance_methods.sort, Fiber.scheduler]
      end
      before = snapshot
      require 'h1p'
      after = snapshot
      p after[0] - before[0]
      p before.drop(1) == after.drop(1)
      p H1P::Parser.new(StringIO.new("GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")).parse_headers[':path']
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq("[:H1P]\ntrue\n\"/\"\n")
  end
end
