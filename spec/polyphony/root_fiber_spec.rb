# frozen_string_literal: true

require 'socket'
require 'open3'

# In a thread's root fiber (a blocking fiber for Ruby) stock blocking calls still let the
# other fibers run, while there are any.
RSpec.describe 'stock blocking calls in the root fiber' do
  it 'reads a pipe another fiber writes to' do
    pipe = Polyphony.pipe
    spin { sleep 0.01; pipe << 'from a fiber'; pipe.close_write }
    expect(pipe.read).to eq('from a fiber')
  end

  it "sets the caller's $_ from gets and readline handed to a helper fiber" do
    reader, writer = IO.pipe
    spin { sleep 0.01; writer.puts 'first', 'second'; writer.close }
    expect(reader.gets).to eq("first\n")
    expect($_).to eq("first\n")
    expect(reader.readline).to eq("second\n")
    expect($_).to eq("second\n")
    expect { reader.readline }.to raise_error(EOFError)
  end

  it 'pops a Thread::Queue another fiber pushes to, and joins threads' do
    queue = Thread::Queue.new
    spin { sleep 0.01; queue << :pushed }
    expect(queue.pop).to eq(:pushed)
    ticks = 0
    spin { loop { sleep 0.005; ticks += 1 } }
    expect(Thread.new { Kernel.sleep 0.05; :joined }.value).to eq(:joined)
    expect(ticks).to be >= 3
  end

  it 'accepts, connects and selects while fibers run' do
    server = TCPServer.new('127.0.0.1', 0)
    spin { TCPSocket.new('127.0.0.1', server.addr[1]).tap { |s| s << 'hi'; s.close } }
    conn = server.accept
    expect(conn.read).to eq('hi')
    reader, writer = IO.pipe
    spin { sleep 0.01; writer << 'x' }
    expect(IO.select([reader], nil, nil, 2)).to eq([[reader], [], []])
    expect(IO.select([reader.dup.tap { reader.read_nonblock(1) }], nil, nil, 0.02)).to be_nil
  ensure
    server&.close
  end

  it 'runs system, backticks, Open3 and Process.wait while fibers run' do
    ticks = 0
    ticker = spin { loop { sleep 0.005; ticks += 1 } }
    expect(`sleep 0.03; echo out`).to eq("out\n")
    expect(system('sleep 0.03')).to be(true)
    out, status = Open3.capture2('sh', '-c', 'sleep 0.02; echo captured')
    expect([out, status.success?]).to eq(["captured\n", true])
    pid = spawn('sleep', '0.03')
    Process.wait(pid)
    expect($?.success?).to be(true)
    expect(ticks).to be >= 8
    ticker.stop
  end

  it 'lets move_on_after and cancel_after interrupt a stock call, with no other fiber alive' do
    a, b = UNIXSocket.pair
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect(move_on_after(0.05, with_value: :timed_out) { a.readpartial(100) }).to eq(:timed_out)
    expect { cancel_after(0.05) { a.gets } }.to raise_error(Polyphony::Cancel)
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 1
    # The abandoned calls took nothing.
    b.write("hello\n")
    expect(a.gets).to eq("hello\n")
    expect(Fiber.current.__cooperative__?).to be_falsy # no timeout left pending
  ensure
    [a, b].each { |io| io&.close }
  end

  it 'leaves stock calls alone when no other fiber is alive, and costs them few objects' do
    expect(Fiber.current.children).to be_empty
    reader, writer = IO.pipe
    writer << 'direct'
    writer.close
    expect(reader.read).to eq('direct')
    a, b = UNIXSocket.pair
    data = 'x'
    before = GC.stat(:total_allocated_objects)
    100.times { a.write(data) && b.readpartial(10) }
    # The read's String, the wrappers' argument lists; keywords and blocks made 4 more each.
    expect((GC.stat(:total_allocated_objects) - before) / 100.0).to be <= 5
  ensure
    [a, b].each { |io| io&.close }
  end

  it 'passes keywords and blocks through to the stock call while fibers run' do
    ticker = spin { loop { sleep 0.005 } }
    expect { system('false', exception: true) }.to raise_error(RuntimeError, /exit 1/)
    reader, writer = IO.pipe
    writer.write('a', 'b', 'c')
    writer.close
    expect(reader.read(2)).to eq('ab')
    expect(reader.readpartial(10, buffer = +'')).to equal(buffer)
    expect(buffer).to eq('c')
    ticker.stop
  end
end
