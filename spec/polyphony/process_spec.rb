# frozen_string_literal: true

RSpec.describe 'processes and the thread pool' do
  def zombies
    `ps -o stat= --ppid #{Process.pid}`.lines.count { |l| l.start_with?('Z') }
  end

  it 'watches a command or a forked block to its end while other fibers run' do
    ticks = 0
    ticker = spin { loop { sleep 0.005; ticks += 1 } }
    expect(Polyphony.watch_process('sleep 0.05; exit 3').exitstatus).to eq(3)
    expect(ticks).to be >= 5
    expect(Polyphony.watch_process { sleep 0.01; exit!(7) }.exitstatus).to eq(7)
    ticker.stop
  end

  it 'terminates and reaps the child when the watching fiber is stopped' do
    watcher = spin { Polyphony.watch_process('sleep 30') }
    sleep 0.05
    started = monotonic
    watcher.stop
    watcher.await
    expect(monotonic - started).to be < 2
    expect(zombies).to eq(0)
  end

  it 'waits with Process.wait through a pidfd in a fiber, and sets $?' do
    pid = spawn('sh', '-c', 'exit 5')
    status = spin { Process.wait(pid); $? }.await
    expect([status.pid, status.exitstatus]).to eq([pid, 5])
    expect { spin { Process.wait(pid) }.await }.to raise_error(Errno::ECHILD)
  end

  it 'gives Polyphony.fork a child whose forking fiber is its root' do
    reader, writer = IO.pipe
    pid = spin do
      Polyphony.fork do
        reader.close
        writer.puts [Fiber.current.parent.inspect, spin { :child_fiber }.await].inspect
        writer.close
      end
    end.await
    writer.close
    expect(reader.read).to eq("[\"nil\", :child_fiber]\n")
    Process.wait(pid)
    expect($?.success?).to be(true)
  end

  it 'runs blocking work on pool threads, results and exceptions coming back to the fiber' do
    pool = Polyphony::ThreadPool.new(2)
    ticks = 0
    ticker = spin { loop { sleep 0.005; ticks += 1 } }
    results = Array.new(4) { |i| spin { pool.process { Kernel.sleep 0.03; i * 10 } } }
    expect(Fiber.await(results)).to eq([0, 10, 20, 30])
    expect(ticks).to be >= 5
    expect { pool.process { raise ArgumentError, 'in the pool' } }.to raise_error(ArgumentError, 'in the pool')
    done = Thread::Queue.new
    pool.cast { done << :cast }
    expect(done.pop).to eq(:cast)
    pool.stop
    ticker.stop
  end
end
