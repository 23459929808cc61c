# frozen_string_literal: true

# Polyphony's fibers in more than one thread, and Timeout.timeout inside spun fibers. Each case
# runs in a child Ruby with a time limit, so that a hang fails the example instead of the suite.
RSpec.describe 'Polyphony across threads' do
  it "wakes a thread's root fiber waiting in receive with a message from another thread" do
    out = run_with_polyphony(<<~RUBY)
      main = Fiber.current
      t = Thread.new do
        main << Fiber.current
        receive * 2
      end
      worker = receive
      sleep 0.05
      worker << 21
      p t.join(3)&.value
    RUBY
    expect(out).to eq("42\n")
  end

  it "wakes a thread's suspended root fiber scheduled from another thread" do
    out = run_with_polyphony(<<~RUBY)
      main = Fiber.current
      t = Thread.new do
        main << Fiber.current
        suspend
      end
      root = receive
      sleep 0.05
      root.schedule(:scheduled)
      p t.join(3)&.value
    RUBY
    expect(out).to eq(":scheduled\n")
  end

  it 'raises Timeout::Error to the caller of Timeout.timeout in a spun fiber, past rescues in the block' do
    out = run_with_polyphony(<<~RUBY)
      require 'timeout'
      ticks = 0
      ticker = spin { loop { sleep 0.01; ticks += 1 } }
      result = spin do
        Timeout.timeout(0.1) do
          begin
            sleep 1
          rescue Timeout::Error, StandardError
            :rescued_inside
          end
        end
      rescue Timeout::Error => e
        [e.class, e.message]
      end.await
      ticker.stop
      p result
      p ticks.between?(3, 50)
    RUBY
    expect(out).to eq("[Timeout::Error, \"execution expired\"]\ntrue\n")
  end
end
