# frozen_string_literal: true

require 'socket'

# Bad use of I/O gets a clear error, never a crash, a hang or a leak.
RSpec.describe 'I/O misuse' do
  it 'raises IOError for a closed IO, in every method' do
    reader, writer = IO.pipe
    reader.close
    writer.close
    expect { reader.read_loop { nil } }.to raise_error(IOError, /closed stream/)
    expect { writer.poly_write('x') }.to raise_error(IOError, /closed stream/)
    expect { IO.splice(reader, Polyphony.pipe, 10) }.to raise_error(IOError, /closed stream/)
    expect { spin { reader.read }.await }.to raise_error(IOError, /closed stream/)
  end

  it 'refuses negative and absurd lengths' do
    reader, _writer = IO.pipe
    expect { reader.poly_read(-1) }.to raise_error(ArgumentError, /negative length/)
    expect { Polyphony.__io_read__(reader.fileno, -1, nil) }.to raise_error(RangeError)
    expect { Polyphony::ThreadPool.new(0) }.to raise_error(ArgumentError, /at least one thread/)
  end

  it 'fails an operation on a bad descriptor with its Errno' do
    expect { Polyphony.__io_read__(987_654, 10, nil) }.to raise_error(Errno::EBADF)
    expect { Polyphony.__io_wait__(987_654, IO::READABLE) }.to raise_error(SystemCallError)
  end

  it 'lets two fibers read one pipe end: each gets data or EOF, none hangs' do
    pipe = Polyphony.pipe
    readers = Array.new(2) { spin { pipe.read_io.poly_read(100) } }
    snooze
    pipe << 'once'
    pipe.close_write
    expect(Fiber.await(readers).sort_by(&:to_s)).to eq([nil, 'once'].sort_by(&:to_s))
    pipe.close
    pipe.close # closing twice is fine
  end

  it 'raises IOError in fibers waiting on an IO that another fiber closes' do
    a, _b = UNIXSocket.pair
    outcome = lambda do |&block|
      spin do
        block.call
      rescue IOError => e
        e.message
      end
    end
    waiters = [
      outcome.call { a.read_loop { nil } },
      outcome.call { a.gets },
      outcome.call { Polyphony.__io_read__(a.fileno, 10, nil) }
    ]
    snooze
    a.close
    expect(Fiber.await(waiters)).to all(eq('stream closed in another fiber'))
    expect(Polyphony.__stats__[:ops]).to be <= 3 # cancelled; gone once the kernel lets go
    spin { sleep 0.02 }.await # (a fiber's wait runs the loop, which reaps the cancels)
    expect(Polyphony.__stats__[:ops]).to eq(0)
  end

  it 'closes the IO even when the closing fiber is stopped while the waiters unwind' do
    a, _b = UNIXSocket.pair
    # The waiter's end stops its child, the closer, while the closer lets the waiter unwind.
    waiter = spin do
      spin { a.close }
      a.gets
    rescue IOError
      :unwound
    end
    expect(waiter.await).to eq(:unwound)
    expect(a).to be_closed
  end

  it 'runs 20 Net::HTTP GETs concurrently in under twice the time of one' do
    require 'net/http'
    server = TCPServer.new('127.0.0.1', 0)
    acceptor = spin do
      server.accept_loop do |conn|
        spin do
          conn.gets("\r\n\r\n")
          sleep 0.2 # the server's work
          conn.poly_write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
          conn.close
        end
      end
    end
    uri = URI("http://127.0.0.1:#{server.addr[1]}/")
    started = monotonic
    expect(spin { Net::HTTP.get(uri) }.await).to eq('ok')
    one = monotonic - started
    started = monotonic
    bodies = Fiber.await(Array.new(20) { spin { Net::HTTP.get(uri) } })
    twenty = monotonic - started
    expect(bodies).to all(eq('ok'))
    expect(twenty).to be < 2 * one
  ensure
    acceptor&.stop
    server&.close
  end
end
