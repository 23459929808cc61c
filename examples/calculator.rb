# frozen_string_literal: true

# The calculator from Polyphony's introduction: a worker fiber answers requests sent to its
# mailbox. `ruby examples/calculator.rb` prints the answers; add `crash` to see an uncaught
# exception end the program, or `supervised` to see a supervisor restart the worker.
require_relative '../lib/polyphony'

def start_worker
  spin(:calculator) do
    loop do
      peer, op, x, y = receive
      peer << x.send(op, y)
    end
  end
end

def calc(op, x, y)
  @worker << [Fiber.current, op, x, y]
  receive
end

case ARGV.first
when 'crash'
  @worker = start_worker
  puts "2 + 3 = #{calc(:+, 2, 3)}"
  calc(:+, 2, nil) # the worker raises TypeError; it reaches this fiber and ends the program
  puts 'never printed'
when 'supervised'
  supervisor = spin(:supervisor) do
    @worker = start_worker
    supervise(restart: :on_error) do |fiber, result|
      puts "#{fiber.tag} crashed (#{result.class}: #{result.message}); restarting" if result.is_a?(Exception)
      @worker = fiber.replacement || fiber.restart
    end
  end
  snooze
  puts "2 + 3 = #{calc(:+, 2, 3)}"
  # No answer comes for the request that crashed the worker: give up on it after a while.
  answer = move_on_after(0.1, with_value: :no_answer) { calc(:+, 2, nil) }
  puts "2 + nil = #{answer}"
  puts "2 ** 3 = #{spin { calc(:**, 2, 3) }.await}"
  supervisor.terminate
else
  @worker = start_worker
  puts "2 + 3 = #{calc(:+, 2, 3)}"
  puts "2 ** 3 = #{spin { calc(:**, 2, 3) }.await}"
end
