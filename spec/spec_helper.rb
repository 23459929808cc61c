# frozen_string_literal: true

require 'open3'
require 'rbconfig'
require_relative '../lib/polyphony'

ROOT = File.expand_path('..', __dir__)

module SpecHelpers
  # Runs a Ruby script with polyphony loaded in a child process; returns [stdout, stderr, status].
  def run_ruby(script, *args, timeout: 20)
    Open3.capture3(RbConfig.ruby, '-I', File.join(ROOT, 'lib'), '-e', script, *args,
                   chdir: ROOT, stdin_data: '') .tap do |_out, _err, status|
      raise "script timed out or was killed: #{status.inspect}" if status.signaled?
    end
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

RSpec.configure do |config|
  config.include SpecHelpers
  config.disable_monkey_patching!
  config.order = :defined
  # Every example starts with no children of the main fiber left from the one before.
  config.after do
    Fiber.current.shutdown_all_children
    Fiber.current.receive_all_pending
  end
end
