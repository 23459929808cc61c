# frozen_string_literal: true

# The native extension (Rust): under a per-Ruby-version directory when installed as a gem
# built for several Rubies, else beside this file (a local build or `gem install`). Loading it
# defines H1P only, and starts nothing; lib/polyphony.rb asks for the rest.
begin
  require_relative "#{RUBY_VERSION[/\d+\.\d+/]}/polyphony_ext"
rescue LoadError
  begin
    require_relative 'polyphony_ext'
  rescue LoadError
    raise if File.exist?(File.join(__dir__, 'polyphony_ext.so')) # (built, but it cannot load: say why)

    root = File.expand_path('../..', __dir__)
    raise LoadError, "polyphony: the native extension is not built (#{File.join(__dir__, 'polyphony_ext.so')}): " \
                     "run `rake compile` in #{root} (it needs Rust's cargo), or install the gem, which builds it"
  end
end
