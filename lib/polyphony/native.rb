# frozen_string_literal: true

# The native extension (Rust): under a per-Ruby-version directory when installed as a gem
# built for several Rubies, else beside this file (a local build or `gem install`). Loading it
# defines Polyphony's backend and H1P, and starts nothing.
begin
  require_relative "#{RUBY_VERSION[/\d+\.\d+/]}/polyphony_ext"
rescue LoadError
  require_relative 'polyphony_ext'
end
